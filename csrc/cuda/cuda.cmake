# The CUDA engine, built twice from the same sources:
#   fusedmlp._cuda_sim  always: the kernels on the CPU simulator (csrc/cuda/sim/), for tests;
#   fusedmlp._cuda      when a CUDA compiler is found (FUSEDMLP_CUDA=AUTO) or required (ON).

find_package(Threads REQUIRED)

python_add_library(_cuda_sim MODULE WITH_SOABI
  csrc/bindings/cuda_module.cpp
  csrc/cuda/sim/trainer_sim.cpp
  csrc/cuda/sim/cuda_sim.cpp)
set_target_properties(_cuda_sim PROPERTIES CXX_STANDARD 20 CXX_STANDARD_REQUIRED ON)
target_include_directories(_cuda_sim PRIVATE csrc/include csrc)
target_compile_definitions(_cuda_sim PRIVATE FUSEDMLP_CUDA_MODULE=_cuda_sim)
target_compile_options(_cuda_sim PRIVATE -O2)
target_link_libraries(_cuda_sim PRIVATE pybind11::headers Threads::Threads)
install(TARGETS _cuda_sim DESTINATION fusedmlp)

if(NOT FUSEDMLP_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      # every major architecture the toolkit supports, plus PTX of the newest for later GPUs
      set(CMAKE_CUDA_ARCHITECTURES all-major)
    endif()
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
    message(STATUS "fusedmlp: building the CUDA engine for ${CMAKE_CUDA_ARCHITECTURES}")
  elseif(FUSEDMLP_CUDA STREQUAL "ON")
    message(FATAL_ERROR "FUSEDMLP_CUDA=ON but no CUDA compiler was found (set CUDACXX or put nvcc on the PATH)")
  else()
    message(STATUS "fusedmlp: no CUDA compiler found; building without fusedmlp._cuda")
  endif()
endif()
