# cli_executor.cmake: end-to-end test of the `sbx` CLI against a real sbx-store and sbx-executor
# on ephemeral ports (cli_executor.sh): exec/sh/files/setup/processes/sandbox/history/serve and
# the error exits. Needs root for the sandboxes (exit 77 = skipped otherwise).
if(TARGET sbx AND TARGET sbx-store AND TARGET sbx-executor)
  add_test(NAME cli_executor
           COMMAND ${CMAKE_CURRENT_LIST_DIR}/cli_executor.sh $<TARGET_FILE:sbx>
                   $<TARGET_FILE:sbx-store> $<TARGET_FILE:sbx-executor>)
  set_tests_properties(cli_executor PROPERTIES LABELS "integration;client" SKIP_RETURN_CODE 77
                       TIMEOUT 300)
endif()
