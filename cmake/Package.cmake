# The Debian package `tunnel` (CPack's DEB generator): what cmake/Install.cmake installs,
# with prefix /usr, plus the maintainer scripts and conffiles of deploy/debian. Built and
# checked by scripts/package.sh and scripts/check-package.sh; run `cpack` in a build tree
# whose tunnel-core, tunnel-agent and tunnelctl are built.
set(TUNNEL_PACKAGE_MAINTAINER "tunnel developers <tunnel@example.org>"
    CACHE STRING "Maintainer field of the .deb (set it to whoever publishes the package)")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME tunnel)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${TUNNEL_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "self-hosted reverse tunnel (core and agent)")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)  # RelWithDebInfo binaries: the debug info stays in the build tree

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # tunnel_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${TUNNEL_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The libraries the binaries link come from dpkg-shlibdeps; adduser runs in postinst.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
# libpq is loaded only for a postgres:// store (store.url), so it is not a dependency.
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "libpq5")
# CPack puts CPACK_PACKAGE_DESCRIPTION_SUMMARY first and indents these lines by one space.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "tunnel-core runs on a public machine; tunnel-agent runs next to a private
app and dials out to the core over one TLS connection, multiplexed into
streams. HTTP requests for NAME.<domain> (and custom domains), raw TCP ports
and UDP ports reach the app through the tunnel.
.
This package installs both programs and tunnelctl (the command-line client
of the core's REST API), systemd units for them (not enabled),
example configurations in /etc/tunnel, the system user tunnel and the data
directory /var/lib/tunnel.")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${PROJECT_SOURCE_DIR}/deploy/debian/postinst;${PROJECT_SOURCE_DIR}/deploy/debian/prerm;${PROJECT_SOURCE_DIR}/deploy/debian/postrm;${PROJECT_SOURCE_DIR}/deploy/debian/conffiles")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_TUNNEL_SOURCE_DIR "${PROJECT_SOURCE_DIR}")
set(CPACK_PRE_BUILD_SCRIPTS "${PROJECT_SOURCE_DIR}/deploy/debian/prepare-package.cmake")
# CPack's own file lists would package the whole source tree for `package_source`; there is
# no source package.
set(CPACK_SOURCE_GENERATOR "")

include(CPack)
