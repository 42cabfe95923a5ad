"""The tokenizer against an independent reference, on the real model.

The reference is built with HF `tokenizers` from the same GGUF metadata (read with the `gguf`
package's GGUFReader, not our reader): models.BPE(vocab, merges), the pre-tokenizer regex for
tokenizer.ggml.pre as HF's tokenizer.json files write it, byte-level mapping and decoder, and
the control / user-defined tokens as special added tokens. Every string of a seeded corpus of
2,500 (tokenizer_corpus.py) must give identical ids, and decode(encode(s)) must give s back.
The whole corpus goes through ONE `resident tokenize --jsonl` process.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tokenizer_corpus  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BINARY = os.environ.get('RESIDENT_BINARY', str(REPO / 'build' / 'resident'))
MODEL = os.environ.get('RESIDENT_MODEL',
                       str(Path.home() / '.cache' / 'resident' / 'qwen2.5-coder-1.5b-q4_k_m.gguf'))

# Pre-tokenizer regexes as HF tokenizer.json files define them (Qwen2.5, Llama 3, GPT-2).
PATTERNS = {
    'qwen2': r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    'llama-bpe': r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    'default': r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
}
CONTROL, USER_DEFINED = 3, 4


def _require_model_and_binary():
    if not Path(MODEL).is_file():
        pytest.skip(f'real model not found at {MODEL} (set RESIDENT_MODEL)')
    if not Path(BINARY).is_file():
        pytest.skip(f'resident binary not found at {BINARY} (set RESIDENT_BINARY)')


def _strings(field):
    return [bytes(field.parts[i]).decode('utf-8') for i in field.data]


@pytest.fixture(scope='module')
def metadata():
    _require_model_and_binary()
    from gguf import GGUFReader
    reader = GGUFReader(MODEL)
    f = reader.fields
    types_field = f['tokenizer.ggml.token_type']
    return {
        'pre': bytes(f['tokenizer.ggml.pre'].parts[-1]).decode(),
        'tokens': _strings(f['tokenizer.ggml.tokens']),
        'merges': _strings(f['tokenizer.ggml.merges']),
        'types': [int(types_field.parts[i][0]) for i in types_field.data],
    }


@pytest.fixture(scope='module')
def reference(metadata):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    tokens, pre = metadata['tokens'], metadata['pre']
    assert pre in PATTERNS, f'no reference pattern for tokenizer.ggml.pre={pre!r}'
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(' ', 1)) for m in metadata['merges']]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=(pre == 'llama-bpe')))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PATTERNS[pre]), behavior='isolated'),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tk.decoder = decoders.ByteLevel()
    specials = [t for t, ty in zip(tokens, metadata['types']) if ty in (CONTROL, USER_DEFINED)]
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tk


@pytest.fixture(scope='module')
def corpus():
    c = tokenizer_corpus.generate()
    assert len(c) >= 2000
    return c


def _run_jsonl(args, lines):
    """One process for all lines; returns parsed output lines and the wall time."""
    start = time.perf_counter()
    proc = subprocess.run([BINARY, 'tokenize', '-m', MODEL, '--jsonl', *args],
                          input='\n'.join(lines) + '\n', capture_output=True, text=True,
                          encoding='utf-8', timeout=600)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    # split('\n'), not splitlines(): JSON output may carry U+2028 or U+0085 unescaped.
    out = [json.loads(line) for line in proc.stdout.split('\n')[:-1]]
    assert len(out) == len(lines), f'{len(out)} output lines for {len(lines)} inputs'
    return out, elapsed


def _compare(ours, theirs, corpus, label):
    mismatches = [i for i in range(len(corpus)) if ours[i] != theirs[i]]
    report = f'{label}: {len(corpus) - len(mismatches)}/{len(corpus)} strings give identical ids'
    print(report)
    details = '\n'.join(f'  {corpus[i]!r}\n    ours {ours[i]}\n    ref  {theirs[i]}'
                        for i in mismatches[:5])
    assert not mismatches, report + '\n' + details


def test_encode_matches_reference(reference, corpus):
    ours, elapsed = _run_jsonl([], [json.dumps(s) for s in corpus])
    theirs = [reference.encode(s, add_special_tokens=False).ids for s in corpus]
    print(f'encoded {len(corpus)} strings ({sum(map(len, corpus))} chars) in one process, '
          f'{elapsed:.2f} s including model load')
    _compare(ours, theirs, corpus, 'parse_special=true')
    # The corpus must actually exercise special-token matching, or the comparison above says
    # nothing about it.
    n_with_special = sum(1 for ids in ours if any(i >= 151643 for i in ids))
    assert n_with_special > 50, f'only {n_with_special} corpus strings hit a special token'


def test_encode_no_special_matches_reference(reference, corpus):
    ours, _ = _run_jsonl(['--no-special'], [json.dumps(s) for s in corpus])
    reference.encode_special_tokens = True  # HF: special-token text is encoded as plain text
    try:
        theirs = [reference.encode(s, add_special_tokens=False).ids for s in corpus]
    finally:
        reference.encode_special_tokens = False
    _compare(ours, theirs, corpus, 'parse_special=false')


def test_decode_roundtrip(corpus):
    _require_model_and_binary()
    ids, _ = _run_jsonl([], [json.dumps(s) for s in corpus])
    texts, _ = _run_jsonl(['--decode', '--render-special'], [json.dumps(i) for i in ids])
    bad = [i for i in range(len(corpus)) if texts[i] != corpus[i]]
    print(f'round trip: {len(corpus) - len(bad)}/{len(corpus)} strings decode back exactly')
    assert not bad, '\n'.join(f'{corpus[i]!r} -> {texts[i]!r}' for i in bad[:5])


def test_decode_matches_reference(reference, corpus):
    """Decoding arbitrary id sequences (not only those BPE produces) agrees with HF's ByteLevel
    decoder wherever the result is valid UTF-8."""
    _require_model_and_binary()
    import random
    rng = random.Random(7)
    n_vocab = 151643  # ordinary tokens only: HF's decoder always prints special tokens
    seqs = [[rng.randrange(n_vocab) for _ in range(rng.randint(1, 20))] for _ in range(500)]
    texts, _ = _run_jsonl(['--decode'], [json.dumps(s) for s in seqs])
    compared = 0
    for seq, text in zip(seqs, texts):
        ref = reference.decode(seq, skip_special_tokens=False)
        if '\ufffd' in ref:  # a split character: HF and we both replace, but not identically
            continue
        compared += 1
        assert text == ref, f'{seq}: ours {text!r} ref {ref!r}'
    assert compared > 300, f'only {compared} sequences compared'


def test_invalid_utf8_prompt_is_an_error():
    _require_model_and_binary()
    proc = subprocess.run([BINARY, 'tokenize', '-m', MODEL, '-p', b'ok \xc3\x28 no'],
                          capture_output=True, timeout=120)
    assert proc.returncode == 1
    assert b'prompt: invalid UTF-8 at byte 3' in proc.stderr, proc.stderr


def test_chat_prompt_qwen(reference):
    """ChatML with Qwen's default system message, tokenized with specials only in the template
    parts: equal to the reference tokenization of the same text."""
    _require_model_and_binary()
    requests = [
        {'messages': [{'role': 'user', 'content': 'Write hello world in C.'}],
         'add_generation_prompt': True},
        {'messages': [{'role': 'system', 'content': 'Be brief.'},
                      {'role': 'user', 'content': 'hi'},
                      {'role': 'assistant', 'content': 'Hello!'},
                      {'role': 'user', 'content': '  spaced\n\n'}],
         'add_generation_prompt': False},
    ]
    proc = subprocess.run([BINARY, 'tokenize', '-m', MODEL, '--chat'],
                          input='\n'.join(json.dumps(r) for r in requests) + '\n',
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.split('\n')[:-1]]
    expected0 = ('<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful '
                 'assistant.<|im_end|>\n<|im_start|>user\nWrite hello world in C.<|im_end|>\n'
                 '<|im_start|>assistant\n')
    assert out[0]['text'] == expected0
    assert out[1]['text'].startswith('<|im_start|>system\nBe brief.<|im_end|>\n')
    assert out[1]['text'].endswith('<|im_start|>user\n  spaced\n\n<|im_end|>\n')
    for o in out:
        assert o['add_bos'] is False
        assert o['ids'] == reference.encode(o['text'], add_special_tokens=False).ids
