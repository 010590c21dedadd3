# sandbox.cmake: the executor's sandbox runtime: sbx-init (the per-sandbox init helper) and
# sbx_sandbox (the executor-side library: sandbox.c, proc.c, cgroup.c), sharing the private
# init protocol generated from init.proto.
set(SBX_INITPROTO_GEN ${CMAKE_BINARY_DIR}/gen/executor)
add_custom_command(
  OUTPUT ${SBX_INITPROTO_GEN}/init.pb-c.c ${SBX_INITPROTO_GEN}/init.pb-c.h
  COMMAND ${CMAKE_COMMAND} -E make_directory ${SBX_INITPROTO_GEN}
  COMMAND ${PROTOC_C} --c_out=${SBX_INITPROTO_GEN} -I ${CMAKE_CURRENT_LIST_DIR}
          ${CMAKE_CURRENT_LIST_DIR}/init.proto
  DEPENDS ${CMAKE_CURRENT_LIST_DIR}/init.proto
  COMMENT "protoc-c services/executor/init.proto")

add_library(sbx_initproto STATIC ${SBX_INITPROTO_GEN}/init.pb-c.c
                                 ${CMAKE_CURRENT_LIST_DIR}/wire.c)
target_include_directories(sbx_initproto PUBLIC ${SBX_INITPROTO_GEN} ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(sbx_initproto PUBLIC PkgConfig::PROTOBUFC)
set_target_properties(sbx_initproto PROPERTIES POSITION_INDEPENDENT_CODE ON)

# sbx-init: small and single-threaded; it does not link the gRPC-heavy sbx_common.
add_executable(sbx-init
  ${CMAKE_CURRENT_LIST_DIR}/init.c
  ${CMAKE_CURRENT_LIST_DIR}/ns.c
  ${CMAKE_CURRENT_LIST_DIR}/mounts.c
  ${CMAKE_CURRENT_LIST_DIR}/caps.c
  ${CMAKE_CURRENT_LIST_DIR}/seccomp.c)
target_link_libraries(sbx-init PRIVATE sbx_initproto PkgConfig::SECCOMP)
install(TARGETS sbx-init DESTINATION ${CMAKE_INSTALL_LIBEXECDIR}/sbx)

add_library(sbx_sandbox STATIC
  ${CMAKE_CURRENT_LIST_DIR}/sandbox.c
  ${CMAKE_CURRENT_LIST_DIR}/cgroup.c
  ${CMAKE_CURRENT_LIST_DIR}/proc.c)
target_include_directories(sbx_sandbox PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(sbx_sandbox PUBLIC sbx_initproto sbx_common Threads::Threads)
# tests and the executor find the init binary here
target_compile_definitions(sbx_sandbox INTERFACE SBX_INIT_BUILD_PATH="$<TARGET_FILE:sbx-init>")
add_dependencies(sbx_sandbox sbx-init)
