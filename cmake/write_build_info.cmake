# Writes build_info.h with the current git commit; rewritten only when it changes, and run at
# every build so benchmark rows name the commit they were measured on.
# Only a repository whose top level is this source tree counts: an exported copy inside another
# checkout (scripts run on the GPU machine from such a copy) must not take the outer HEAD.
execute_process(COMMAND git -C ${SRC} rev-parse --show-toplevel OUTPUT_VARIABLE top
                OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
get_filename_component(src_real "${SRC}" REALPATH)
if(rc EQUAL 0)
  get_filename_component(top "${top}" REALPATH)
endif()
set(commit "")
if(rc EQUAL 0 AND top STREQUAL src_real)
  execute_process(COMMAND git -C ${SRC} rev-parse --short=12 HEAD OUTPUT_VARIABLE commit
                  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
else()
  set(rc 1)
endif()
if(NOT rc EQUAL 0 OR commit STREQUAL "")
  # A copy of the tree without .git (the GPU machine) names its commit in .device-commit.
  if(EXISTS ${SRC}/.device-commit)
    file(STRINGS ${SRC}/.device-commit commit LIMIT_COUNT 1)
  else()
    set(commit "unknown")
  endif()
endif()
set(dirty "")
if(rc EQUAL 0)
  execute_process(COMMAND git -C ${SRC} status --porcelain --untracked-files=no OUTPUT_VARIABLE dirty
                  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
endif()
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
