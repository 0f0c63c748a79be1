# What `cmake --install` and the Debian package (cmake/Package.cmake) put where:
#   <prefix>/bin/tunnel-core, tunnel-agent, tunnelctl
#   <prefix>/lib/systemd/system/tunnel-core.service, tunnel-agent.service  (deploy/systemd)
#   <confdir>/core.yaml, agent.yaml   the examples with data_dir /var/lib/tunnel; a plain
#                                     install never overwrites a file already there
#   <prefix>/share/doc/tunnel/        examples/, README.md, CHANGELOG.md, LICENSE, the
#                                     operations and configuration guides
# <confdir> is /etc/tunnel for the prefix /usr (the package) and <prefix>/etc/tunnel
# otherwise (GNU's sysconfdir). Units and configs are written at install time, since the
# prefix is only known then: `cmake --install --prefix X` and CPack (which installs with
# prefix /usr into its staging DESTDIR) both set it after configuration.
include(GNUInstallDirs)

install(TARGETS tunnel-core tunnel-agent tunnelctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES docs/examples/core.yaml docs/examples/agent.yaml
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
install(FILES README.md CHANGELOG.md LICENSE docs/operations.md docs/configuration.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(CODE "
  set(TUNNEL_SOURCE_DIR \"${PROJECT_SOURCE_DIR}\")
  set(TUNNEL_STAGING_DIR \"${PROJECT_BINARY_DIR}/deploy\")
  set(TUNNEL_INSTALL_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
  set(TUNNEL_INSTALL_DOCDIR \"${CMAKE_INSTALL_DOCDIR}\")
  include(\"${PROJECT_SOURCE_DIR}/cmake/InstallDeploy.cmake\")
")
