# ports.cmake: tests of the port forwarder and dev-server readiness (services/executor
# portfwd.c, devserver.c). They create real sandboxes and run Python servers inside, so they
# need root and /usr/bin/python3.
if(TARGET sbx_sandbox)
  foreach(t portfwd devserver)
    sbx_add_cmocka_test(test_${t}
      SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_${t}.c
      LIBS sbx_ports CURL::libcurl
      LABELS unit ports
      PROPERTIES TIMEOUT 120)
    if(TARGET test_${t})
      add_dependencies(test_${t} sbx-init)
    endif()
  endforeach()
endif()
