# Project-wide compile flags, applied to every target we own (not third_party).
add_library(tunnel_flags INTERFACE)
target_compile_options(tunnel_flags INTERFACE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
  $<$<BOOL:${TUNNEL_WERROR}>:-Werror>
  # GCC 12 at -O2 reports asio's coroutine frame allocator (its own operator new/delete pair) as
  # mismatched: a known false positive.
  $<$<CXX_COMPILER_ID:GNU>:-Wno-mismatched-new-delete>)
# Asio: we use C++20 coroutines and never the deprecated interfaces.
target_compile_definitions(tunnel_flags INTERFACE BOOST_ASIO_NO_DEPRECATED BOOST_ASIO_DISABLE_BOOST_COROUTINE)
if(TUNNEL_SANITIZE)
  # -fno-sanitize=function: clang 14 cannot emit its checks inside C++20 coroutines
  # ("Cannot represent a difference across sections"); the rest of UBSan stays on.
  target_compile_options(tunnel_flags INTERFACE -fsanitize=address,undefined -fno-sanitize=function
    -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(tunnel_flags INTERFACE -fsanitize=address,undefined -fno-sanitize=function)
endif()
if(TUNNEL_FUZZ)
  target_compile_options(tunnel_flags INTERFACE -fsanitize=fuzzer-no-link)
endif()

# Adds a GoogleTest executable made of the given sources, linked to the given libraries.
function(tunnel_add_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS" ${ARGN})
  if(NOT TUNNEL_TESTS)
    return()
  endif()
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest_main tunnel_flags)
  # Tests that read files of the checkout (docs/examples) find it here, not via __FILE__,
  # which ccache's base_dir may make relative.
  target_compile_definitions(${name} PRIVATE TUNNEL_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS unit)
endfunction()
