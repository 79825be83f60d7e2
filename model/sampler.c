/* stub: implemented by its issue */
typedef int pivot_stub_sampler;
