# store.cmake: end-to-end tests of sbx-store through Python grpcio (tests/interop/test_store.py).
# One ctest entry per test class; run with `ctest -L store` (or `-L interop`). Each class starts
# its own sbx-store on 127.0.0.1:0 with a temporary data dir and stops it at the end.
set(SBX_STORE_TEST_PYTHON /usr/bin/python3)
set(SBX_STORE_TEST_CLASSES HistoryTest WatchTest CacheTest ProjectTest KvTest TenantTest
    CheckpointTest BadInputTest MetricsTest ShutdownTest)
foreach(_cls ${SBX_STORE_TEST_CLASSES})
  add_test(NAME interop.store.${_cls}
           COMMAND ${SBX_STORE_TEST_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/test_store.py
                   --bindir ${CMAKE_BINARY_DIR} ${_cls})
  set_tests_properties(interop.store.${_cls} PROPERTIES
    LABELS "interop;store"
    TIMEOUT 180
    ENVIRONMENT "SBX_PROTO_DIR=${CMAKE_SOURCE_DIR}/proto;SBX_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
endforeach()
