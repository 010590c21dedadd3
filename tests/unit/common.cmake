# Unit tests of common/ (the gRPC layer, auth, config, backoff, status). One ctest entry per case.
foreach(t status auth config backoff workpool rpc_server pbcheck)
  sbx_add_cmocka_test(test_${t} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_${t}.c LIBS sbx_common LABELS unit)
endforeach()
