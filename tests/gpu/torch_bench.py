#!/usr/bin/env python3
"""Decode tokens/s of the Llama-3-8B shape in PyTorch / HF transformers, for
comparison with Pivot's CUDA decoder in the same GPU check run.

Random init (no download), torch.float16, SDPA attention, eager mode. Every
sequence starts with a 2k-token KV cache of random values (built directly,
like Pivot's benchmark, so no prefill is timed), then greedy single-token
steps with past_key_values at batch 1, 16 and 64.

    python3 tests/gpu/torch_bench.py [--tsv FILE] [--ctx 2048] [--steps 16]
"""
import argparse
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tsv")
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--batches", default="1,16,64")
    a = ap.parse_args()
    out = open(a.tsv, "w") if a.tsv else None

    def tsv(k, v):
        if out:
            out.write(f"{k}\t{v}\n")
            out.flush()

    try:
        import torch
        import transformers
        from transformers import LlamaConfig, LlamaForCausalLM
    except Exception as e:  # noqa: BLE001 - report whatever is missing
        print(f"SKIP  torch/transformers not importable: {e}")
        tsv("torch", f"unavailable ({e})")
        return 0
    if not torch.cuda.is_available():
        print("SKIP  torch sees no CUDA device")
        tsv("torch", "no CUDA device")
        return 0
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.cuda.get_device_name(0)}")
    tsv("torch", f"torch {torch.__version__}, transformers {transformers.__version__}")
    cfg = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                      max_position_embeddings=8192, rope_theta=500000.0, rms_norm_eps=1e-5,
                      tie_word_embeddings=False)
    cfg._attn_implementation = "sdpa"
    t0 = time.time()
    torch.set_default_dtype(torch.float16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    torch.set_default_dtype(torch.float32)
    model.eval()
    print(f"model built on the GPU in {time.time() - t0:.1f} s")

    from transformers import DynamicCache
    L, kvh, hd = cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    print(f"{'batch':>6} {'tokens/s':>12} {'ms/step':>10}")
    for B in [int(x) for x in a.batches.split(",")]:
        try:
            cache = DynamicCache()
            for layer in range(L):
                k = torch.randn(B, kvh, a.ctx, hd, device="cuda", dtype=torch.float16)
                v = torch.randn(B, kvh, a.ctx, hd, device="cuda", dtype=torch.float16)
                cache.update(k, v, layer)
            tok = torch.randint(0, cfg.vocab_size, (B, 1), device="cuda")
            warm, n = 3, a.steps
            with torch.inference_mode():
                for i in range(warm + n):
                    if i == warm:
                        torch.cuda.synchronize()
                        t = time.time()
                    pos = torch.full((B, 1), a.ctx + i, device="cuda", dtype=torch.long)
                    o = model(input_ids=tok, past_key_values=cache, use_cache=True,
                              position_ids=pos, cache_position=pos[0])
                    cache = o.past_key_values
                    tok = o.logits[:, -1].argmax(-1, keepdim=True)
                torch.cuda.synchronize()
            step = (time.time() - t) / n
            print(f"{B:>6} {B / step:>12.1f} {step * 1e3:>10.2f}")
            tsv(f"torch_b{B}", f"{B / step:.1f}\t{step * 1e3:.2f}")
            del cache, o
            torch.cuda.empty_cache()
        except Exception as e:  # noqa: BLE001 - one batch failing must not hide the others
            print(f"FAIL  batch {B}: {type(e).__name__}: {e}")
            tsv(f"torch_b{B}", f"failed ({type(e).__name__})")
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
