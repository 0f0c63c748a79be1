# CPack runs this (CPACK_PRE_BUILD_SCRIPTS) after installing into its staging tree and before
# building the .deb. It turns the plain install's documents into what Debian expects in
# /usr/share/doc/tunnel: `copyright` instead of LICENSE, and a Debian-format changelog.gz
# (the package is native: its version has no Debian revision) that points at CHANGELOG.md.
# SOURCE_DATE_EPOCH, when set (scripts/package.sh sets the last commit's time), makes the
# changelog's date, and so the package, reproducible.
set(root "${CPACK_TEMPORARY_INSTALL_DIRECTORY}")
if(NOT IS_DIRECTORY "${root}/usr/share/doc/tunnel")
  message(FATAL_ERROR "prepare-package: ${root}/usr/share/doc/tunnel is missing")
endif()
set(doc "${root}/usr/share/doc/tunnel")

file(REMOVE "${doc}/LICENSE")
file(COPY_FILE "${CPACK_TUNNEL_SOURCE_DIR}/deploy/debian/copyright" "${doc}/copyright")
file(CHMOD "${doc}/copyright" PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)

string(TIMESTAMP date "%a, %d %b %Y %H:%M:%S +0000" UTC)
file(WRITE "${doc}/changelog"
     "tunnel (${CPACK_DEBIAN_PACKAGE_VERSION}) unstable; urgency=medium\n\n"
     "  * Built from the project's sources with CPack (scripts/package.sh). What\n"
     "    changed in this version: /usr/share/doc/tunnel/CHANGELOG.md.\n\n"
     " -- ${CPACK_DEBIAN_PACKAGE_MAINTAINER}  ${date}\n")
execute_process(COMMAND gzip -9nf "${doc}/changelog" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "prepare-package: gzip ${doc}/changelog failed")
endif()

file(MAKE_DIRECTORY "${root}/usr/share/lintian/overrides")
file(COPY_FILE "${CPACK_TUNNEL_SOURCE_DIR}/deploy/debian/tunnel.lintian-overrides"
     "${root}/usr/share/lintian/overrides/tunnel")
file(CHMOD "${root}/usr/share/lintian/overrides/tunnel"
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
