/* stub: implemented by its issue */
typedef int pivot_stub_cmd_generate;
