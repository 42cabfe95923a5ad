"""Deterministic tokenizer test corpus: varied strings that stress every branch of the
pre-tokenizer regexes and the BPE merges (scripts, emoji sequences, whitespace runs, digits,
contractions, punctuation, embedded special tokens, random code points).

    python3 tokenizer_corpus.py [N] [SEED]   # prints the corpus as JSON lines
"""
import json
import random
import sys

CODE_SNIPPETS = [
    'def f(x):\n    return x ** 2  # square\n',
    'for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n',
    'fn main() {\n    println!("{}", 42);\n}\n',
    'SELECT id, name FROM users WHERE age >= 18 ORDER BY name;',
    'const x = await fetch(`/api/${id}`);\r\nconsole.log(x?.data ?? null);',
    '#include <stdio.h>\nint main(void){printf("%d\\n",1);}',
    '<div class="a">&nbsp;</div>\n<!-- comment -->',
    'import numpy as np\narr = np.zeros((3, 4), dtype=np.float32)\n',
    'if err != nil {\n\t\treturn fmt.Errorf("x: %w", err)\n\t}',
    '    \n    \n\n\t\t  def  __init__ (self ) :',
    'x=>x*2; y -> z; a::b::<T>(); #[derive(Debug)]',
    '{"key": [1, 2.5e-3, true, null], "k2": "v\\u00e9"}',
    'public static void main(String[] args) throws IOException {',
    'lambda: (yield from gen()) or None  # noqa: E731',
    '$ echo "$HOME" | grep -E \'^/root\' && ls -la ~/.cache',
]
WORDS = ['hello', 'world', 'The', 'quick', 'brown', 'fox', 'jumps', 'over', 'lazy', 'dog',
         'tokenizer', 'résumé', 'naïve', 'Straße', 'coöperate', 'ﬁnance', 'İstanbul', 'ǅemal']
SCRIPTS = {
    'cjk': '我们今天去公园散步天气很好。東京は日本の首都です。한국어 문장을 씁니다',
    'arabic': 'مرحبا بالعالم، كيف حالك؟ السلام عليكم ١٢٣٤',
    'hebrew': 'שלום עולם, מה שלומך? עִבְרִית',
    'devanagari': 'नमस्ते दुनिया, आप कैसे हैं? क्षत्रिय ११२',
    'cyrillic': 'Привет, мир! Съешь же ещё этих мягких французских булок',
    'greek': 'Καλημέρα κόσμε, ΑΒΓΔ αβγδ ϐϑϕ',
    'thai': 'สวัสดีชาวโลก ภาษาไทย',
    'mixed': 'abc中文def日本語ghiКириллица123عربي',
}
EMOJI = ['😀', '👍🏽', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🇯🇵', '🇺🇸🇬🇧', '❤️', '🧑🏿‍💻', '✊🏼', '🫠',
         '1️⃣', '🏴󠁧󠁢󠁳󠁣󠁴󠁿', '👩‍❤️‍💋‍👨', '☺︎']
COMBINING = ['e\u0301', 'a\u0308\u0304', 'n\u0303', 'Z\u0351\u0352\u0353\u0354', '\u0301x',
             'ก\u0e31\u0e49', 'q\u0307\u0323', 'Å', 'A\u030a']
WHITESPACE = [' ', '  ', '\t', '\n', '\r\n', '\n\n', ' \n', '\t\n', '   \t', '\u00a0',
              '\u3000', '\u2028', '\r', '\x0b', '\x0c', '\u0085', '\u200b']
PUNCT = ['!', '?', '...', '!!!', '?!', '--', '—', '–', '«»', '“”', '()', '[]', '{}', '::',
         '->', '=>', '===', '!==', '&&', '||', '@#$%', '^&*', '~', '`', '\\\\', '/*', '*/',
         '。', '、', '！', '？', '¿¡', '§', '©®™', '°', '±', '€£¥']
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'Re", "'VE", "'D",
                "'M", "'T", "’s", "'x", "''", "'", "'ſ"]
SPECIALS = ['<|im_start|>', '<|im_end|>', '<|endoftext|>', '<tool_call>', '</tool_call>',
            '<|fim_prefix|>', '<|fim_middle|>', '<|fim_suffix|>', '<|im_start', 'im_end|>',
            '<|im_start|><|im_end|>', '<|<|im_end|>|>']


def random_number(rng):
    kind = rng.randrange(6)
    digits = ''.join(rng.choice('0123456789') for _ in range(rng.randint(1, 25)))
    if kind == 0:
        return digits
    if kind == 1:
        return f'{rng.uniform(-1e6, 1e6):.{rng.randint(0, 8)}f}'
    if kind == 2:
        return f'{rng.randint(0, 10**9):,}'
    if kind == 3:
        return f'{rng.random():.3e}'
    if kind == 4:
        return '٠١٢٣٤٥٦٧٨٩'[: rng.randint(1, 10)] + '①②③'[: rng.randint(0, 3)]
    return '0x' + ''.join(rng.choice('0123456789abcdefABCDEF') for _ in range(rng.randint(1, 16)))


def random_codepoint(rng):
    while True:
        band = rng.random()
        if band < 0.3:
            cp = rng.randint(0x20, 0x7e)
        elif band < 0.5:
            cp = rng.randint(0x80, 0x7ff)
        elif band < 0.8:
            cp = rng.randint(0x800, 0xffff)
        elif band < 0.95:
            cp = rng.randint(0x10000, 0x10ffff)
        else:
            cp = rng.randint(0, 0x1f)
        if not 0xd800 <= cp <= 0xdfff:  # surrogates cannot be encoded in UTF-8
            return chr(cp)


def fragment(rng):
    kind = rng.randrange(12)
    if kind == 0:
        return rng.choice(CODE_SNIPPETS)
    if kind == 1:
        s = rng.choice(list(SCRIPTS.values()))
        a = rng.randrange(len(s))
        return s[a:a + rng.randint(1, 30)]
    if kind == 2:
        return ''.join(rng.choice(EMOJI) for _ in range(rng.randint(1, 4)))
    if kind == 3:
        return rng.choice(WORDS) + rng.choice(COMBINING)
    if kind == 4:
        return ''.join(rng.choice(WHITESPACE) for _ in range(rng.randint(1, 6)))
    if kind == 5:
        return random_number(rng)
    if kind == 6:
        return rng.choice(WORDS) + rng.choice(CONTRACTIONS)
    if kind == 7:
        return ''.join(rng.choice(PUNCT) for _ in range(rng.randint(1, 5)))
    if kind == 8:
        return rng.choice(SPECIALS)
    if kind == 9:
        return ''.join(random_codepoint(rng) for _ in range(rng.randint(1, 12)))
    if kind == 10:
        w = rng.choice(WORDS)
        return rng.choice([w.upper(), w.lower(), w.title(), ' ' + w, w + ' '])
    return ' '.join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))


def generate(n=2500, seed=20240611):
    rng = random.Random(seed)
    corpus = [
        '', ' ', '\n', '\t', '\r\n', 'a', 'Hello world', ' Hello world', 'Hello  world',
        "I'm sure you'll like it; they've said it's John's.", "DON'T SHOUT, I'LL HEAR",
        '1', '12', '123', '1234', '12345678901234567890', '3.14159', '1,000,000',
        '   leading and trailing   ', 'tabs\tand\ttabs', 'line1\nline2\r\nline3\rline4',
        '\n\n\n', '    ', ' \n ', 'emoji 👨‍👩‍👧‍👦 family', '🇯🇵🇺🇸', 'e\u0301', '\u0301',
        '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n', '<|endoftext|>',
        'x' * 2000, ' ' * 300, '\n' * 50, '1' * 101, 'ab' * 500, '!' * 77,
        'αβγ' * 100, '中' * 300, '😀' * 50,
    ]
    while len(corpus) < n:
        parts = [fragment(rng) for _ in range(rng.randint(1, 8))]
        corpus.append(''.join(parts))
    return corpus


if __name__ == '__main__':
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2500
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 20240611
    for s in generate(n, seed):
        print(json.dumps(s))
