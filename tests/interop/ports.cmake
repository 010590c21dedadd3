# ports.cmake: ExposePort / StartDevServer over gRPC with Python grpcio (tests/interop/test_ports.py)
# against a real sbx-executor and sbx-store on ephemeral ports: servers in sandboxes reached from
# the host, readiness outcomes, 50 concurrent connections, a 100 MB download, raw TCP echo, a
# chunked response, host ports freed when a sandbox stops. One ctest entry per test class; needs
# root (namespaces, cgroups, uid ranges).
set(SBX_PORTS_INTEROP_CLASSES ExposePortTest ReadinessTest TrafficTest KillTest)
foreach(_cls ${SBX_PORTS_INTEROP_CLASSES})
  add_test(NAME interop.ports.${_cls}
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/test_ports.py
                   --bindir ${CMAKE_BINARY_DIR} ${_cls})
  set_tests_properties(interop.ports.${_cls} PROPERTIES
    LABELS "interop;ports"
    TIMEOUT 300
    ENVIRONMENT "SBX_PROTO_DIR=${CMAKE_SOURCE_DIR}/proto;SBX_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
endforeach()
