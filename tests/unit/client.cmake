# Unit tests of client/ (libsbx and the sbx CLI): rendezvous routing, argument parsing of every
# command, JSON escaping, exit-status mapping, keygen. One ctest entry per case.
if(TARGET sbx_cli)
  foreach(t route args json exit)
    sbx_add_cmocka_test(test_client_${t} SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_client_${t}.c
                        LIBS sbx_cli sbx_common LABELS unit client)
  endforeach()
endif()
