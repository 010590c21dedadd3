# sandbox.cmake: the sandbox runtime's security suite (label "security"). Each cmocka case is its
# own ctest entry; they need root (cgroups, uid ranges) and skip with a reason otherwise.
if(TARGET sbx_sandbox)
  # runs inside sandboxes: no sanitizer runtime (its shadow mappings would fight the limits)
  add_executable(sbx_probe ${CMAKE_CURRENT_LIST_DIR}/sbx_probe.c)
  target_compile_options(sbx_probe PRIVATE -fno-sanitize=all)
  target_link_options(sbx_probe PRIVATE -fno-sanitize=all)
  sbx_add_cmocka_test(test_sandbox_security
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_sandbox_security.c
    LIBS sbx_sandbox
    LABELS security
    PROPERTIES TIMEOUT 180)
  target_include_directories(test_sandbox_security PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../unit)
  target_compile_definitions(test_sandbox_security PRIVATE
    SBX_PROBE_PATH="$<TARGET_FILE:sbx_probe>")
  add_dependencies(test_sandbox_security sbx_probe sbx-init)
endif()
