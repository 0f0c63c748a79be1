# Runs at install time (from cmake/Install.cmake): the systemd units with this install's
# paths, and the configuration files. Inputs: CMAKE_INSTALL_PREFIX (the install's),
# TUNNEL_SOURCE_DIR, TUNNEL_STAGING_DIR (a scratch folder in the build tree) and the
# prefix-relative TUNNEL_INSTALL_BINDIR and TUNNEL_INSTALL_DOCDIR.
set(prefix "${CMAKE_INSTALL_PREFIX}")
if(prefix STREQUAL "/usr")
  set(TUNNEL_CONFDIR "/etc/tunnel")
else()
  set(TUNNEL_CONFDIR "${prefix}/etc/tunnel")
endif()
set(TUNNEL_BINDIR "${prefix}/${TUNNEL_INSTALL_BINDIR}")
set(TUNNEL_DOCDIR "${prefix}/${TUNNEL_INSTALL_DOCDIR}")
set(unit_dir "${prefix}/lib/systemd/system")

foreach(unit tunnel-core.service tunnel-agent.service)
  configure_file("${TUNNEL_SOURCE_DIR}/deploy/systemd/${unit}.in"
                 "${TUNNEL_STAGING_DIR}/systemd/${unit}" @ONLY)
  file(INSTALL "${TUNNEL_STAGING_DIR}/systemd/${unit}" DESTINATION "${unit_dir}"
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endforeach()

# The units run with ProtectSystem=strict and StateDirectory=tunnel, so the data dir must be
# /var/lib/tunnel; the examples' ./tunnel-data suits a run from a checkout instead.
foreach(name core agent)
  set(target "${TUNNEL_CONFDIR}/${name}.yaml")
  if(EXISTS "$ENV{DESTDIR}${target}")
    message(STATUS "Keeping: $ENV{DESTDIR}${target}")
    continue()
  endif()
  file(READ "${TUNNEL_SOURCE_DIR}/docs/examples/${name}.yaml" text)
  string(REPLACE "\ndata_dir: ./tunnel-data\n" "\ndata_dir: /var/lib/tunnel\n" rewritten "${text}")
  if(rewritten STREQUAL text)
    message(FATAL_ERROR "docs/examples/${name}.yaml has no line 'data_dir: ./tunnel-data' "
                        "to point at /var/lib/tunnel; update cmake/InstallDeploy.cmake")
  endif()
  file(WRITE "${TUNNEL_STAGING_DIR}/etc/${name}.yaml" "${rewritten}")
  file(INSTALL "${TUNNEL_STAGING_DIR}/etc/${name}.yaml" DESTINATION "${TUNNEL_CONFDIR}"
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endforeach()
