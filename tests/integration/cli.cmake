# cli.cmake: end-to-end tests of the `sbx` CLI against real services on ephemeral ports.
# cli_store: kv / project / history / cache / keygen / health against sbx-store; parts whose RPC
# still answers UNIMPLEMENTED are skipped with a reason (exit 77), the rest must pass.
if(TARGET sbx AND TARGET sbx-store)
  add_test(NAME cli_store
           COMMAND ${CMAKE_CURRENT_LIST_DIR}/cli_store.sh $<TARGET_FILE:sbx> $<TARGET_FILE:sbx-store>)
  set_tests_properties(cli_store PROPERTIES LABELS "integration;client" SKIP_RETURN_CODE 77 TIMEOUT 120)
endif()
