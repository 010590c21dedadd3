# executor.cmake: sbx-executor over gRPC with Python grpcio (tests/interop/test_executor_rpc.py):
# every SandboxExecutor RPC against a real executor (and sbx-store for history/cache/outbox).
# One ctest entry per test class; needs root (namespaces, cgroups, uid ranges).
set(SBX_EXECUTOR_INTEROP_CLASSES SandboxLifecycleTest ExecTest FilesTest TenantTest StoreTest)
foreach(_cls ${SBX_EXECUTOR_INTEROP_CLASSES})
  add_test(NAME interop.executor.${_cls}
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/test_executor_rpc.py
                   --bindir ${CMAKE_BINARY_DIR} ${_cls})
  set_tests_properties(interop.executor.${_cls} PROPERTIES
    LABELS "interop;executor"
    TIMEOUT 300
    ENVIRONMENT "SBX_PROTO_DIR=${CMAKE_SOURCE_DIR}/proto;SBX_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
endforeach()
