"""Benchmark: how well each new-row initialisation reads held-out Persian before any training (step 0).

    python bench/embedding_init.py --model_dir .cache/langadapt/SmolLM2-135M-Instruct \
        --tokenizer_dir outputs/demo/tokenizer --heldout .cache/langadapt/demo_data/heldout/fa.jsonl \
        [--documents 40] [--output_dir outputs/bench]

Baseline measured in the same run: the base model with its own tokenizer on the same documents. Every other row is
the base model with the merged tokenizer and the new rows set by one rule; the number is held-out bits per UTF-8 byte
(:mod:`langadapt.bpb`, tokenizer-independent, lower is better) and its change over the baseline. The model is loaded
and grown once; each rule overwrites only the new rows (the base rows never change), so the rows compare like for
like. Rules: ``mean`` (mean of all base rows), ``first_piece``, and the position-weighted piece means of
:func:`langadapt.embeddings.piece_weights` for each ``--decays`` value (1.0 = ``subtoken_mean``, 0.5 =
``subtoken_weighted``; values above 1 weigh the last piece most). ``--untied_pairs IN:HEAD,...`` then unties the head
(a copy of the embeddings: the same model before any row changes) and scores each pair of input and head decays,
which tells whether an untied head (Llama, Mistral) wants its own rule. Goal (issue 16): the best rule within 5% of
the baseline. Prints a table and writes ``<output_dir>/bench_embedding_init.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def read_docs(path: str, n: int) -> list[str]:
    docs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                docs.append(json.loads(line)["text"])
            if len(docs) >= n:
                break
    return docs


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model_dir", required=True, help="Base model folder (SmolLM2-135M-Instruct in the demo).")
    ap.add_argument("--tokenizer_dir", required=True, help="Merged tokenizer folder (tokenizer/merge.py output).")
    ap.add_argument("--heldout", required=True, help="Held-out Persian JSONL ({'text'} a line).")
    ap.add_argument("--documents", type=int, default=40, help="First N held-out documents scored.")
    ap.add_argument("--decays", default="1.0,0.5,0.25,2.0", help="Piece-weight ratios to try (comma-separated).")
    ap.add_argument("--untied_pairs", default="0.5:0.5,0.5:1.0,1.0:0.5,1.0:1.0,0.5:0.3",
                    help="input:head decay pairs scored with the head untied (comma-separated; empty: skip).")
    ap.add_argument("--block_size", type=int, default=512, help="Tokens per scoring window.")
    ap.add_argument("--output_dir", default="outputs/bench")
    args = ap.parse_args(argv)
    for flag, path in (("--model_dir", args.model_dir), ("--tokenizer_dir", args.tokenizer_dir),
                       ("--heldout", args.heldout)):
        if not os.path.exists(path):
            ap.error(f"{flag}: {path} does not exist")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from langadapt.embeddings import resize_and_init, subtoken_pieces, subtoken_row
    from langadapt.normalize import NormalizerConfig
    from langadapt.perplexity import corpus_perplexity

    docs = read_docs(args.heldout, args.documents)
    normalizer = NormalizerConfig.from_dir(args.tokenizer_dir)
    base_tok = AutoTokenizer.from_pretrained(args.model_dir)
    tok = AutoTokenizer.from_pretrained(args.tokenizer_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32).eval()

    def score(tokenizer) -> dict:
        t = time.time()
        r = corpus_perplexity(model, tokenizer, docs, block_size=args.block_size, normalizer=normalizer)
        return {"bpb": r.bpb, "tokens": r.tokens, "bytes": r.bytes, "seconds": round(time.time() - t, 1)}

    rows = {"base tokenizer (baseline)": score(base_tok)}
    print(f"baseline: {rows['base tokenizer (baseline)']}", flush=True)
    report = resize_and_init(model, len(tok), init="subtoken_mean", pad_to_multiple_of=64, tokenizer=tok,
                             base_tokenizer=base_tok)
    new_ids = report.new_token_ids
    pieces = subtoken_pieces(new_ids, tok, base_tok, max_base_id=report.first_new_id)
    tables = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight is not tables[0]:
        tables.append(out.weight)
    bases = [w[: report.first_new_id].detach().clone() for w in tables]

    def apply(rule) -> None:
        with torch.no_grad():
            for w, base in zip(tables, bases):
                mean = base.mean(0)
                for i in new_ids:
                    w[i] = rule(base, pieces[i]) if pieces[i] else mean

    rules = {"mean (all base rows)": lambda base, ids: base.mean(0),
             "first_piece": lambda base, ids: base[ids[0]]}
    for d in [float(x) for x in args.decays.split(",") if x.strip()]:
        name = {1.0: "subtoken_mean (decay 1)", 0.5: "subtoken_weighted (decay 0.5)"}.get(d, f"pieces, decay {d:g}")
        rules[name] = (lambda dd: lambda base, ids: subtoken_row(base, ids, dd))(d)
    for name, rule in rules.items():
        apply(rule)
        rows[name] = score(tok)
        print(f"{name}: {rows[name]}", flush=True)

    pairs = [tuple(float(v) for v in p.split(":")) for p in args.untied_pairs.split(",") if p.strip()]
    if pairs and len(tables) == 1:
        # Untie: the head becomes its own copy of the (already grown) table, so before the rows below change the
        # model computes what the tied one does.
        model.config.tie_word_embeddings = False
        head = model.get_output_embeddings()
        head.weight = torch.nn.Parameter(tables[0].detach().clone())
        tables = [model.get_input_embeddings().weight, head.weight]
        bases = [bases[0], bases[0].clone()]
    for d_in, d_head in pairs:
        with torch.no_grad():
            for w, base, d in zip(tables, bases, (d_in, d_head)):
                for i in new_ids:
                    if pieces[i]:
                        w[i] = subtoken_row(base, pieces[i], d)
        name = f"untied head: input decay {d_in:g}, head decay {d_head:g}"
        rows[name] = score(tok)
        print(f"{name}: {rows[name]}", flush=True)

    base_bpb = rows["base tokenizer (baseline)"]["bpb"]
    print(f"\n{len(docs)} held-out documents, {rows['base tokenizer (baseline)']['bytes']} bytes; "
          f"{len(new_ids)} new tokens, tied={report.tied}\n")
    print("| rows | bits/byte | vs base tokenizer | tokens |\n| --- | ---: | ---: | ---: |")
    for name, r in rows.items():
        print(f"| {name} | {r['bpb']:.3f} | {100 * (r['bpb'] / base_bpb - 1):+.1f}% | {r['tokens']} |")
    result = {"documents": len(docs), "new_tokens": len(new_ids), "tied": report.tied, "rows": rows,
              "model_dir": args.model_dir, "tokenizer_dir": args.tokenizer_dir}
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "bench_embedding_init.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
