# The CUDA engine, built twice from the same sources:
#   fusedmlp._cuda_sim  always: the kernels on the CPU simulator (csrc/cuda/sim/), for tests;
#   fusedmlp._cuda      when a working CUDA compiler is found (FUSEDMLP_CUDA=AUTO) or required (ON).
#
# AUTO must never fail a CPU user's install: an nvcc that is too old, broken, or that this CMake
# cannot drive is probed in a throw-away project first (csrc/cuda/probe/), and a failed probe
# skips fusedmlp._cuda with a warning that says why. ON turns the same failure into an error.

find_package(Threads REQUIRED)

python_add_library(_cuda_sim MODULE WITH_SOABI
  csrc/bindings/cuda_module.cpp
  csrc/cuda/sim/trainer_sim.cpp
  csrc/cuda/sim/cuda_sim.cpp)
set_target_properties(_cuda_sim PROPERTIES CXX_STANDARD 20 CXX_STANDARD_REQUIRED ON)
target_include_directories(_cuda_sim PRIVATE csrc/include csrc)
target_compile_definitions(_cuda_sim PRIVATE FUSEDMLP_CUDA_MODULE=_cuda_sim)
# -ffp-contract=off: each multiply and add rounded on its own on every host (GCC contracts them
# into FMAs where the target has them, as on ARM), so the simulator computes the same everywhere
target_compile_options(_cuda_sim PRIVATE -O2 -ffp-contract=off)
target_link_libraries(_cuda_sim PRIVATE pybind11::headers Threads::Threads)
install(TARGETS _cuda_sim DESTINATION fusedmlp)

# The GPU architectures a toolkit release builds by default: SASS for every major architecture
# it supports from sm_60 on (double-precision atomicAdd; a cubin runs on later minors of its
# major, so sm_80 covers sm_86/sm_89), plus PTX of the newest for GPUs released after it.
# all-major is not used: it means sm_50 on CUDA 12 (no double atomicAdd), architectures older
# CMake releases reject on CUDA 13, and it is unknown before CMake 3.23.
function(fusedmlp_cuda_default_architectures version out)
  if(version VERSION_LESS 11.0)
    set(archs "")
  elseif(version VERSION_LESS 11.8)
    set(archs "60-real;70-real;80")
  elseif(version VERSION_LESS 12.8)
    set(archs "60-real;70-real;80-real;90")
  elseif(version VERSION_LESS 13.0)
    set(archs "60-real;70-real;80-real;90-real;100-real;120")
  else()
    # CUDA 13 dropped everything before Turing.
    set(archs "75-real;80-real;90-real;100-real;120")
  endif()
  set(${out} "${archs}" PARENT_SCOPE)
endfunction()

# Skip fusedmlp._cuda (AUTO) or stop the build (ON), saying why (one argument: a compiler log
# is full of semicolons, which more arguments would split on).
function(fusedmlp_cuda_unavailable reason)
  if(FUSEDMLP_CUDA STREQUAL "ON")
    message(FATAL_ERROR "fusedmlp: FUSEDMLP_CUDA=ON, but ${reason}")
  endif()
  message(WARNING "fusedmlp: building without the CUDA engine (fusedmlp._cuda): ${reason}\n"
                  "The CPU engine is built as usual. Set FUSEDMLP_CUDA=OFF to skip this check, "
                  "or see docs/cuda.md to build with CUDA.")
  set(FUSEDMLP_CUDA_OK OFF PARENT_SCOPE)
endfunction()

set(FUSEDMLP_CUDA_OK OFF)
if(NOT FUSEDMLP_CUDA STREQUAL "OFF")
  set(FUSEDMLP_CUDA_OK ON)
  # The compiler, as CMake itself would find it: CMAKE_CUDA_COMPILER, $CUDACXX, nvcc on the PATH,
  # then the usual toolkit locations.
  if(CMAKE_CUDA_COMPILER)
    set(FUSEDMLP_NVCC "${CMAKE_CUDA_COMPILER}")
  elseif(DEFINED ENV{CUDACXX} AND NOT "$ENV{CUDACXX}" STREQUAL "")
    set(FUSEDMLP_NVCC "$ENV{CUDACXX}")
  else()
    # (PATHS come after the PATH, as in CMake's own search)
    find_program(FUSEDMLP_NVCC_FOUND nvcc
      PATHS ENV CUDA_PATH ENV CUDA_HOME /usr/local/cuda PATH_SUFFIXES bin)
    set(FUSEDMLP_NVCC "${FUSEDMLP_NVCC_FOUND}")
  endif()

  if(NOT FUSEDMLP_NVCC)
    if(FUSEDMLP_CUDA STREQUAL "ON")
      message(FATAL_ERROR "FUSEDMLP_CUDA=ON but no CUDA compiler was found (set CUDACXX or put nvcc on the PATH)")
    endif()
    message(STATUS "fusedmlp: no CUDA compiler found; building without fusedmlp._cuda")
    set(FUSEDMLP_CUDA_OK OFF)
  endif()

  if(FUSEDMLP_CUDA_OK)
    execute_process(COMMAND "${FUSEDMLP_NVCC}" --version
      RESULT_VARIABLE nvcc_rc OUTPUT_VARIABLE nvcc_out ERROR_VARIABLE nvcc_err TIMEOUT 120)
    if(NOT nvcc_rc EQUAL 0)
      fusedmlp_cuda_unavailable("'${FUSEDMLP_NVCC} --version' failed (${nvcc_rc}): ${nvcc_err}${nvcc_out}")
    elseif(NOT nvcc_out MATCHES "release ([0-9]+\\.[0-9]+)")
      fusedmlp_cuda_unavailable("'${FUSEDMLP_NVCC} --version' does not name a CUDA release: ${nvcc_out}")
    else()
      set(FUSEDMLP_CUDA_VERSION "${CMAKE_MATCH_1}")
    endif()
  endif()

  if(FUSEDMLP_CUDA_OK)
    if(DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(FUSEDMLP_CUDA_ARCHS "${CMAKE_CUDA_ARCHITECTURES}")
    elseif(DEFINED ENV{CUDAARCHS} AND NOT "$ENV{CUDAARCHS}" STREQUAL "")
      set(FUSEDMLP_CUDA_ARCHS "$ENV{CUDAARCHS}")
    else()
      fusedmlp_cuda_default_architectures("${FUSEDMLP_CUDA_VERSION}" FUSEDMLP_CUDA_ARCHS)
    endif()
    if(FUSEDMLP_CUDA_ARCHS STREQUAL "")
      fusedmlp_cuda_unavailable("CUDA ${FUSEDMLP_CUDA_VERSION} (${FUSEDMLP_NVCC}) is older than the CUDA 11 the engine needs")
    endif()
  endif()

  if(FUSEDMLP_CUDA_OK)
    # One probe per compiler, release, architecture list and CMake; a success is cached so an
    # incremental rebuild does not probe again.
    set(probe_key "${FUSEDMLP_NVCC}|${FUSEDMLP_CUDA_VERSION}|${FUSEDMLP_CUDA_ARCHS}|${CMAKE_VERSION}|${CMAKE_CUDA_HOST_COMPILER}|${CMAKE_CUDA_FLAGS}")
    if(NOT "${FUSEDMLP_CUDA_PROBED}" STREQUAL "${probe_key}")
      string(REPLACE ";" "," probe_archs "${FUSEDMLP_CUDA_ARCHS}")
      message(STATUS "fusedmlp: probing CUDA ${FUSEDMLP_CUDA_VERSION} (${FUSEDMLP_NVCC}) for ${FUSEDMLP_CUDA_ARCHS}")
      # A separate CMake run, as check_language() does: whatever fails in there (enable_language
      # included) cannot stop this configure.
      set(probe_dir "${CMAKE_BINARY_DIR}/fusedmlp_cuda_probe")
      # the user's own CUDA settings (a host compiler nvcc accepts, -allow-unsupported-compiler)
      set(probe_user_settings "")
      foreach(var CMAKE_CUDA_HOST_COMPILER CMAKE_CUDA_FLAGS CMAKE_BUILD_TYPE)
        if(NOT "${${var}}" STREQUAL "")
          list(APPEND probe_user_settings "-D${var}=${${var}}")
        endif()
      endforeach()
      file(REMOVE_RECURSE "${probe_dir}")
      execute_process(
        COMMAND "${CMAKE_COMMAND}" -S "${CMAKE_CURRENT_LIST_DIR}/probe" -B "${probe_dir}"
                -G "${CMAKE_GENERATOR}"
                "-DCMAKE_MAKE_PROGRAM=${CMAKE_MAKE_PROGRAM}"
                "-DCMAKE_CUDA_COMPILER=${FUSEDMLP_NVCC}"
                ${probe_user_settings}
                "-DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}"
                "-DFUSEDMLP_PROBE_ARCHITECTURES=${probe_archs}"
        RESULT_VARIABLE probe_rc OUTPUT_VARIABLE probe_out ERROR_VARIABLE probe_out TIMEOUT 600)
      if(probe_rc EQUAL 0)
        execute_process(COMMAND "${CMAKE_COMMAND}" --build "${probe_dir}"
          RESULT_VARIABLE probe_rc OUTPUT_VARIABLE probe_out ERROR_VARIABLE probe_out TIMEOUT 600)
      endif()
      if(probe_rc EQUAL 0)
        set(FUSEDMLP_CUDA_PROBED "${probe_key}" CACHE INTERNAL "the CUDA set-up that compiled the probe")
      else()
        # The end of the log names the failure (unsupported architecture, CMake/nvcc mismatch).
        string(LENGTH "${probe_out}" probe_len)
        if(probe_len GREATER 3000)
          math(EXPR probe_start "${probe_len} - 3000")
          string(SUBSTRING "${probe_out}" ${probe_start} -1 probe_out)
        endif()
        string(REPLACE ";" " " archs_text "${FUSEDMLP_CUDA_ARCHS}")
        fusedmlp_cuda_unavailable("nvcc ${FUSEDMLP_CUDA_VERSION} (${FUSEDMLP_NVCC}) with CMake ${CMAKE_VERSION} cannot compile a test program for the architectures ${archs_text}. The end of its log:\n${probe_out}")
      endif()
    endif()
  endif()
endif()

if(FUSEDMLP_CUDA_OK)
  set(CMAKE_CUDA_COMPILER "${FUSEDMLP_NVCC}")
  set(CMAKE_CUDA_ARCHITECTURES "${FUSEDMLP_CUDA_ARCHS}")
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  python_add_library(_cuda MODULE WITH_SOABI
    csrc/bindings/cuda_module.cpp
    csrc/cuda/trainer.cu)
  set_target_properties(_cuda PROPERTIES
    CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON
    CUDA_RUNTIME_LIBRARY Static)
  target_include_directories(_cuda PRIVATE csrc/include csrc)
  target_compile_definitions(_cuda PRIVATE FUSEDMLP_CUDA_MODULE=_cuda)
  target_compile_options(_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -O3>)
  target_link_libraries(_cuda PRIVATE pybind11::headers CUDA::cudart_static)
  install(TARGETS _cuda DESTINATION fusedmlp)
  message(STATUS "fusedmlp: building the CUDA engine with CUDA ${FUSEDMLP_CUDA_VERSION} for ${CMAKE_CUDA_ARCHITECTURES}")
endif()
