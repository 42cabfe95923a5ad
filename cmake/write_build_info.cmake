# Writes build_info.h with the current git commit; rewritten only when it changes, and run at
# every build so benchmark rows name the commit they were measured on.
execute_process(COMMAND git -C ${SRC} rev-parse --short=12 HEAD OUTPUT_VARIABLE commit
                OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR commit STREQUAL "")
  # A copy of the tree without .git (the GPU machine) names its commit in .device-commit.
  if(EXISTS ${SRC}/.device-commit)
    file(STRINGS ${SRC}/.device-commit commit LIMIT_COUNT 1)
  else()
    set(commit "unknown")
  endif()
endif()
execute_process(COMMAND git -C ${SRC} status --porcelain --untracked-files=no OUTPUT_VARIABLE dirty
                OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT dirty STREQUAL "")
  set(commit "${commit}-dirty")
endif()
set(content "#pragma once\n#define RESIDENT_COMMIT \"${commit}\"\n")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT old STREQUAL content)
  file(WRITE ${OUT} "${content}")
endif()
