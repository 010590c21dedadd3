# executor_svc.cmake: unit tests of the sbx-executor service layer (services/executor:
# exec_validate.c, cmdkey.c, outbox.c, registry.c, exectab.c, handlers_*.c). The registry and
# handler tests create real sandboxes and need root (they skip otherwise).
if(TARGET sbx_executor_svc)
  foreach(t executor_validate executor_outbox executor_handlers)
    sbx_add_cmocka_test(test_${t} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_${t}.c
                        LIBS sbx_executor_svc LABELS unit executor PROPERTIES TIMEOUT 120)
  endforeach()
  if(TARGET test_executor_handlers)
    add_dependencies(test_executor_handlers sbx-init)
  endif()
endif()
