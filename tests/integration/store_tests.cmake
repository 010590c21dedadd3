# store_tests.cmake: concurrency and crash tests of sbx-store through gRPC (Python grpcio,
# /usr/bin/python3, the shared harness tests/interop/sbx_harness.py). Run with `ctest -L store`.
#   integration.store.concurrency  8 x 1000 Incr = 8000, 8 appenders gapless, CAS one winner
#   integration.store.crash        kill -9 mid-stream x3 (--sync on), --sync off, direct commit:
#                                  every acknowledged write survives, sequences gapless
set(SBX_STORE_IT_PYTHON /usr/bin/python3)
foreach(_t concurrency crash)
  add_test(NAME integration.store.${_t}
           COMMAND ${SBX_STORE_IT_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/store_${_t}.py
                   --bindir ${CMAKE_BINARY_DIR})
  set_tests_properties(integration.store.${_t} PROPERTIES
    LABELS "integration;store"
    TIMEOUT 300
    ENVIRONMENT "SBX_PROTO_DIR=${CMAKE_SOURCE_DIR}/proto;SBX_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
endforeach()
