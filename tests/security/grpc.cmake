# grpc.cmake: the executor's security suite driven over gRPC (tests/security/grpc_executor.py):
# host files, traversal, symlink/hardlink escapes, /usr writes, host processes and loopback,
# mount/unshare, another sandbox's processes, fork bomb, 30 GiB allocation, 500 MB stdout, a file
# grown until the disk limit, many tiny files. One ctest entry per attack; needs root.
set(SBX_GRPC_SECURITY_TESTS
  test_etc_shadow_via_command test_etc_shadow_via_file_api test_host_file_via_command
  test_dotdot_and_absolute_traversal test_symlink_escape_via_file_api test_hardlink_escape
  test_write_usr test_no_host_processes_and_no_host_loopback test_mount_unshare_ptrace_denied
  test_signal_another_sandboxs_process test_fork_bomb test_30g_allocation test_500mb_stdout
  test_big_file_until_the_limit test_many_tiny_files)
foreach(_t ${SBX_GRPC_SECURITY_TESTS})
  add_test(NAME security.grpc.${_t}
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/grpc_executor.py
                   --bindir ${CMAKE_BINARY_DIR} GrpcSecurityTest.${_t})
  set_tests_properties(security.grpc.${_t} PROPERTIES
    LABELS security
    TIMEOUT 300
    ENVIRONMENT "SBX_PROTO_DIR=${CMAKE_SOURCE_DIR}/proto;SBX_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
endforeach()
