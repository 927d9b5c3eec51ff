# libFuzzer targets, one per reader (see the METAGRAD_FUZZ block of the top-level CMakeLists.txt);
# included by the top-level CMakeLists.txt; tests/fuzz/run.sh runs them over their seed corpora in tests/fuzz/corpus/<target>.
set(FUZZ_TARGETS graph_text checkpoint model_description zip png idx oneshot_runs)
add_custom_target(fuzz_targets)
foreach(t ${FUZZ_TARGETS})
  add_executable(fuzz_${t} ${CMAKE_CURRENT_LIST_DIR}/${t}_fuzz.cpp)
  target_include_directories(fuzz_${t} PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(fuzz_${t} PRIVATE metagrad ZLIB::ZLIB nlohmann_json::nlohmann_json)
  target_compile_options(fuzz_${t} PRIVATE ${METAGRAD_WARNINGS})
  target_link_options(fuzz_${t} PRIVATE -fsanitize=fuzzer)
  add_dependencies(fuzz_targets fuzz_${t})
endforeach()
