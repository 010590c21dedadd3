# sandbox.cmake: unit tests of the sandbox runtime (services/executor sandbox.c, proc.c,
# cgroup.c, sbx-init). They create real sandboxes, so they need root; without it they skip.
if(TARGET sbx_sandbox)
  sbx_add_cmocka_test(test_sandbox
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_sandbox.c
    LIBS sbx_sandbox
    LABELS unit sandbox
    PROPERTIES TIMEOUT 120)
  sbx_add_cmocka_test(test_sandbox_proc
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_sandbox_proc.c
    LIBS sbx_sandbox
    LABELS unit sandbox
    PROPERTIES TIMEOUT 120)
  # shared helpers (tsbx_*) live with the security suite
  target_include_directories(test_sandbox PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../security ${CMAKE_CURRENT_LIST_DIR})
  target_include_directories(test_sandbox_proc PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../security ${CMAKE_CURRENT_LIST_DIR})
  add_dependencies(test_sandbox sbx-init)
  add_dependencies(test_sandbox_proc sbx-init)
  # the warm pool of inits (sbx_sandbox_pool_*)
  sbx_add_cmocka_test(test_sandbox_pool
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_sandbox_pool.c
    LIBS sbx_sandbox
    LABELS unit sandbox
    PROPERTIES TIMEOUT 120)
  if(TARGET test_sandbox_pool)
    target_include_directories(test_sandbox_pool PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../security ${CMAKE_CURRENT_LIST_DIR})
    add_dependencies(test_sandbox_pool sbx-init)
  endif()
endif()
