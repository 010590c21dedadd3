# Interop tests: Python grpcio (Debian's python3-grpcio, /usr/bin/python3) against both
# service binaries. One ctest entry per test class; run with `ctest -L interop`.
# The test generates its Python stubs from ${SBX_PROTO_DIR} at run time and starts the
# binaries found under --bindir itself (127.0.0.1:0, temporary data dirs).
set(SBX_INTEROP_PYTHON /usr/bin/python3)
set(SBX_INTEROP_CLASSES HealthTest StatusTest MaxMessageTest AuthTest TlsTest ShutdownTest CliTest)
foreach(_cls ${SBX_INTEROP_CLASSES})
  add_test(NAME interop.python.${_cls}
           COMMAND ${SBX_INTEROP_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/test_interop.py
                   --bindir ${CMAKE_BINARY_DIR} ${_cls})
  set_tests_properties(interop.python.${_cls} PROPERTIES
    LABELS interop
    TIMEOUT 120
    ENVIRONMENT "SBX_PROTO_DIR=${CMAKE_SOURCE_DIR}/proto;SBX_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
endforeach()
