// emu: empty stand-in; emu_cuda.h provides what the kernels use.
