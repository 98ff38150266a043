#!/usr/bin/env python3
"""PyTorch baseline for cmc's delta training step.

The delta model (a stories15M-shaped Llama) written plainly in PyTorch and
trained on random tokens with AdamW; prints the training throughput as one
machine-readable line, `torch_tokens_per_s N`, for scripts/bench-delta.sh to
compare with the Go implementation.

Run with Debian's interpreter, which has python3-torch:
    /usr/bin/python3 scripts/bench_torch.py
"""

import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(head_dim, seq_len, theta=10000.0):
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    angles = torch.outer(torch.arange(seq_len).float(), freqs)  # [T, head_dim/2]
    return angles.cos(), angles.sin()


def apply_rope(x, cos, sin):
    """Rotates adjacent pairs (2i, 2i+1) of x [B, H, T, head_dim] by position."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, dim, n_heads):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)
        self.wv = nn.Linear(dim, dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, d = x.shape
        q = self.wq(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        att = F.softmax(scores + mask, dim=-1)
        return self.wo((att @ v).transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, dim, hidden, n_heads):
        super().__init__()
        self.attention_norm = RMSNorm(dim)
        self.attention = Attention(dim, n_heads)
        self.ffn_norm = RMSNorm(dim)
        self.feed_forward = FeedForward(dim, hidden)

    def forward(self, x, cos, sin, mask):
        x = x + self.attention(self.attention_norm(x), cos, sin, mask)
        return x + self.feed_forward(self.ffn_norm(x))


class Llama(nn.Module):
    def __init__(self, vocab, dim, hidden, n_layers, n_heads, seq_len):
        super().__init__()
        self.tok_embeddings = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList(Block(dim, hidden, n_heads) for _ in range(n_layers))
        self.norm = RMSNorm(dim)
        cos, sin = rope_tables(dim // n_heads, seq_len)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)
        mask = torch.full((seq_len, seq_len), float("-inf")).triu(1)
        self.register_buffer("mask", mask)
        # llama2.c's initialisation, so that the loss starts near ln(vocab).
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, tokens):
        t = tokens.shape[1]
        cos, sin, mask = self.cos[:t], self.sin[:t], self.mask[:t, :t]
        x = self.tok_embeddings(tokens)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        # The classifier is tied to the token embeddings.
        return self.norm(x) @ self.tok_embeddings.weight.t()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vocab = 32000
    model = Llama(vocab=vocab, dim=288, hidden=768, n_layers=6, n_heads=6, seq_len=args.seq)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.0)
    data = torch.randint(0, vocab, (args.batch, args.seq + 1))
    inputs, targets = data[:, :-1], data[:, 1:]

    def step():
        logits = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        loss = step()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    tokens = args.batch * args.seq * args.steps
    print(f"# torch {torch.__version__}, {args.threads} threads, batch {args.batch}x{args.seq}, "
          f"{args.steps} steps in {elapsed:.2f}s wall, {cpu:.2f}s CPU, last loss {loss:.3f}")
    print(f"torch_tokens_per_s {tokens / elapsed:.1f}")
    # Per CPU-second of all threads: on a machine shared with other work
    # this still measures the code rather than the load. OpenBLAS and
    # OpenMP threads spin while they wait, which counts against torch here.
    print(f"torch_tokens_per_cpu_s {tokens / cpu:.1f}")


if __name__ == "__main__":
    main()
