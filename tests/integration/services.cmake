# Integration: sbx-store and sbx-executor started together on ephemeral ports, health and a
# round trip through each, then a clean SIGTERM of both (exit 0, nothing alarming on stderr).
# Run with `ctest -L integration`. Needs /usr/bin/python3 with Debian's python3-grpcio.
add_test(NAME integration.services
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/services_test.py
                 --bindir ${CMAKE_BINARY_DIR})
set_tests_properties(integration.services PROPERTIES
  LABELS integration
  TIMEOUT 120
  ENVIRONMENT "SBX_PROTO_DIR=${CMAKE_SOURCE_DIR}/proto;SBX_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
