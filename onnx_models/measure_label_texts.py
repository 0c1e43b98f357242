"""Measure which label texts make the ConSE label bridge find pictures (and music) from text.

Usage: python measure_label_texts.py [--gcompris RCC_DIR] [--work DIR] [--only image|music]
           [--variants a n export.py] [--top-k 5 10 20] [--json OUT]
Run it with the export env (~/.cache/medley/venv-export/bin/python: onnxruntime, tokenizers,
torch for importing export.py) after `cargo xtask models` (efficientnet-lite0, minilm-l6,
musicnn-mtt, musicnn-msd), with ffmpeg on PATH. GCompris' data need not be installed:
`apt-get download gcompris-qt-data && dpkg -x gcompris-qt-data_*.deb x` and pass
--gcompris x/usr/share/gcompris-qt/rcc.

The bridge (crates/medley-models/src/bridge.rs) puts an item in MiniLM's text space as the
L2-normalised sum of its top-k class probabilities times the embeddings of those classes'
texts. Which texts? This script rebuilds that bridge in Python for several candidate texts
and templates and ranks labelled pictures for text queries, as `medley search` does.

Pictures with human-written English words: GCompris (Debian `gcompris-qt-data`, its Qt
resource files under /usr/share/gcompris-qt/rcc: word pictures of `lang`, animals of
`erase` / `explore_*_animals`, objects and monuments of `categorization` /
`explore_monuments`), the test photos in $MEDLEY_HOME/media/photos and one middle frame of some
test videos, with captions written here. Queries:
  name     the picture's own word: "a giraffe", "a hammer" (GCompris' words)
  general  a broader word: "a bird" for a heron, "a tool" for pliers, "a fruit" for a plum
  synonym  another everyday word: "a rhino", "a spanner", "a motorbike", "a cat" for a kitten
  caption  a sentence about a photo or video frame
A query's targets are all pictures carrying it; its rank is where the first target comes.

Music: GCompris' instrument sounds (26 clips of one instrument each) and world-music clips
(9), queried with the instrument's name, the style ("taiko drums", "an opera singer") or a
broader word ("percussion", "a woman singing", "classical music"); the two test mp3s stay in as
distractors. Small: 44 queries over 37 clips.
"""

import argparse
import ast
import json
import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
HOME = os.environ.get("MEDLEY_HOME", os.path.expanduser("~/.cache/medley"))
MODELS = os.path.join(HOME, "models")
os.environ.setdefault("MEDLEY_WHEELS", os.path.join(HOME, "wheels"))


# --- Qt resource (.rcc) files: GCompris keeps its pictures and sounds in them ---------------


def rcc_files(path):
    """{resource path: bytes} of a Qt .rcc file (format versions 1-3; zlib-compressed entries)."""
    b = open(path, "rb").read()
    assert b[:4] == b"qres", path
    ver, tree, data, names = struct.unpack(">IIII", b[4:20])
    node = 22 if ver >= 2 else 14
    out = {}

    def name(off):
        o = names + off
        n = struct.unpack(">H", b[o:o + 2])[0]
        return b[o + 6:o + 6 + 2 * n].decode("utf-16-be")

    def walk(i, prefix):
        o = tree + i * node
        noff, flags = struct.unpack(">IH", b[o:o + 6])
        nm = name(noff) if i else ""
        if flags & 2:
            count, first = struct.unpack(">II", b[o + 6:o + 14])
            for c in range(first, first + count):
                walk(c, prefix + nm + "/")
        else:
            doff = struct.unpack(">I", b[o + 10:o + 14])[0]
            p = data + doff
            n = struct.unpack(">I", b[p:p + 4])[0]
            d = b[p + 4:p + 4 + n]
            if flags & 1:
                d = zlib.decompress(d[4:])
            out[prefix + nm] = d

    walk(0, "")
    return out


# --- The labelled pictures --------------------------------------------------------------------

LANG = ("apple apricot bear bee beetle bird boy bug bull butterfly camel cat chicken child coconut cow dog dolphin "
        "duck fish flies:fly fox frog fruit giraffe girl gorilla hedgehog hippopotamus horse kangaroo kiwi lemon "
        "lizard man melon mosquito mouse orange owl panda peach pear pig plum rabbit raspberry rhinoceros shark sheep "
        "snail snake spider strawberry turkey turtle whale wolf woman reptile:")
ERASE = ("alpaca bee butterfly calf camels:camel caterpillar chamaeleon:chameleon cheetah crab dolphin "
         "flying_fox:flying&fox gibbon giraffe goat gorilla gosling heron horse kingfisher kitten "
         "long_nosed_monkey:long-nosed&monkey macaque meerkats:meerkat northern_harrier:northern&harrier "
         "nubian_ibex:ibex penguin pika red_panda:red&panda rhinoceros spoonbills:spoonbill squirrel swans:swan toucan")
WORLD = ("bison chameleon crocodile dragon:komodo&dragon giraffe hedgehog jaguar kangaroo koala lemur moose narwhal "
         "panda polar_bear:polar&bear scarlet_macaw:scarlet&macaw")
FARM = "dog cow cat chicken horse duck sheep owl pig"
# Objects of `categorization`: file stem (digits dropped) -> word.
OBJECTS = {"bucket": "bucket", "chair": "chair", "cup": "cup", "knife": "knife", "pan": "frying pan",
           "pencil": "pencil", "pillow": "pillow", "plate": "plate", "spoons": "spoon", "scissors": "scissors",
           "hammer": "hammer", "plier": "pliers", "screwDriver": "screwdriver", "wrench": "wrench",
           "measuringTape": "measuring tape", "multimeter": "multimeter", "tweezer": "tweezers", "sickle": "sickle",
           "nailCutter": "nail clipper", "bulb": "light bulb", "erasers": "eraser", "baseball": "baseball",
           "volleyball": "volleyball", "weighingMachine": "weighing scale", "windmill": "windmill", "dam": "dam",
           "igloo": "igloo", "spray": "spray bottle", "sideCutter": "wire cutters", "cuttingTool": "wire cutters",
           "blackslate": "blackboard", "buffetset": "cup and saucer", "fish": "fish"}
# Monuments (both sets) by the kind of building a user would type.
MONUMENTS = {
    "tower": "eiffelTower leaningTowerOfPisa kutubMinar qutubMinar jucheTower",
    "skyscraper": "burj empireState",
    "castle": "neuschwansteinCastle chateaudeChambord chateaudeChenonceau citedeCarcassonne",
    "fort": "castillodeSanMarcos fortSumter castleClinton",
    "cathedral": "cathedral berlinCathedral reimsCathedral wormsCathedral",
    "pyramid": "greatPyramid greatPyramidOfGiza bentPyramid meidumPyramid redPyramid chichenItza",
    "palace": "zimniPalace mysorePalace schwerinPalace hawaMahal palaisdesPapes",
    "statue": "statueOfLiberty statueofLiberty christTheRedeemer",
    "triumphal arch": "arcDeTriomphe IndiaGate gatewayofIndia brandenburgGate",
    "stupa": "greatStupa",
    "aqueduct": "pontduGard",
    "ancient ruins": "colosseum arlesAmphitheater trierImperialBaths petra machuPicchu",
}
GENERAL = {
    "bird": "lang/bird lang/chicken lang/duck lang/owl lang/turkey farm/chicken farm/duck farm/owl erase/gosling "
            "erase/heron erase/kingfisher erase/northern_harrier erase/penguin erase/spoonbills erase/swans "
            "erase/toucan world/scarlet_macaw",
    "fish": "lang/fish lang/shark cat:fish",
    "insect": "lang/bee lang/beetle lang/bug lang/butterfly lang/flies lang/mosquito erase/bee erase/butterfly "
              "erase/caterpillar",
    "monkey": "erase/macaque erase/long_nosed_monkey erase/gibbon world/lemur",
    "ape": "lang/gorilla erase/gorilla erase/gibbon",
    "fruit": "lang/apple lang/apricot lang/coconut lang/fruit lang/kiwi lang/lemon lang/melon lang/orange "
             "lang/peach lang/pear lang/plum lang/raspberry lang/strawberry",
    "reptile": "lang/reptile lang/lizard lang/snake lang/turtle world/chameleon world/crocodile world/dragon "
               "erase/chamaeleon",
    "tool": "cat:hammer cat:plier cat:screwDriver cat:wrench cat:scissors cat:sickle cat:measuringTape "
            "cat:sideCutter cat:cuttingTool cat:tweezer",
    "bear": "lang/bear world/polar_bear lang/panda world/panda",
    "farm animal": "lang/cow lang/pig lang/sheep lang/horse lang/bull farm/cow farm/pig farm/sheep farm/horse "
                   "erase/goat erase/calf",
    "sea creature": "lang/dolphin lang/whale lang/shark erase/dolphin erase/crab world/narwhal",
    "kitchen utensil": "cat:knife cat:spoons cat:pan cat:plate cat:cup",
    "ball": "cat:baseball cat:volleyball",
    "person": "lang/boy lang/girl lang/man lang/woman lang/child photo/astronaut",
    "big cat": "erase/cheetah world/jaguar",
}
SYNONYM = {
    "rhino": "lang/rhinoceros erase/rhinoceros", "hippo": "lang/hippopotamus",
    "cat": "lang/cat farm/cat erase/kitten photo/chelsea", "baby goose": "erase/gosling", "baby cow": "erase/calf",
    "bat": "erase/flying_fox", "parrot": "world/scarlet_macaw", "bunny": "lang/rabbit",
    "hen": "lang/chicken farm/chicken", "motorbike": "photo/motorcycle_left", "espresso": "photo/coffee",
    "spaceman": "photo/astronaut", "wild goat": "erase/nubian_ibex", "spanner": "cat:wrench",
    "tape measure": "cat:measuringTape", "skillet": "cat:pan", "kitty": "lang/cat farm/cat erase/kitten",
    "lorry": "", "puppy": "",
}
CAPTIONS = {
    "photo/astronaut": "a woman astronaut in an orange spacesuit",
    "photo/chelsea": "a close-up of a tabby cat's face",
    "photo/coffee": "a cup of espresso on a saucer",
    "photo/motorcycle_left": "a red motorcycle parked in a garage",
    "photo/rocket": "a rocket on the launch pad at night",
    "frame/bikes": "a cyclist riding a bike in a city street",
    "frame/earth": "the earth at night seen from space",
    "frame/carphone_pristine": "a surprised man in a suit sitting in a car",
    "frame/bigbuckbunny": "a big cartoon rabbit in a green meadow",
}


def article(word):
    return ("an " if word[0] in "aeiou" else "a ") + word


def parse_words(spec):
    """'camels:camel flying_fox:flying&fox reptile:' -> {stem: word or None}."""
    out = {}
    for tok in spec.split():
        stem, _, word = tok.partition(":")
        out[stem] = word.replace("&", " ") if ":" in tok and word else (None if ":" in tok else stem)
    return out


def picture_set(rcc_dir, media):
    """[(key, webp-or-path bytes or path)] and {query group: {query: set of keys}}."""
    pictures, names = {}, {}
    sources = {"lang": ("lang", LANG), "erase": ("erase", ERASE), "world": ("explore_world_animals", WORLD),
               "farm": ("explore_farm_animals", FARM)}
    for short, (rcc, words) in sources.items():
        files = {os.path.basename(k)[:-5]: v for k, v in rcc_files(os.path.join(rcc_dir, rcc + ".rcc")).items()
                 if k.endswith(".webp")}
        for stem, word in parse_words(words).items():
            pictures[f"{short}/{stem}"] = files[stem]
            if word:
                names[f"{short}/{stem}"] = word
    monuments = {s: kind for kind, stems in MONUMENTS.items() for s in stems.split()}
    for rcc in ("categorization", "explore_monuments"):
        for k, v in rcc_files(os.path.join(rcc_dir, rcc + ".rcc")).items():
            stem = os.path.basename(k)[:-5]
            base = re.sub(r"\d+$", "", stem)
            if not k.endswith(".webp"):
                continue
            if base in OBJECTS and rcc == "categorization":
                pictures[f"cat:{stem}"] = v
                names[f"cat:{stem}"] = OBJECTS[base]
            elif stem in monuments:
                pictures[f"mon:{stem}"] = v
    for f in sorted(os.listdir(os.path.join(media, "photos"))):
        pictures["photo/" + os.path.splitext(f)[0]] = os.path.join(media, "photos", f)
    for v in ("bikes", "earth", "carphone_pristine", "bigbuckbunny"):
        pictures["frame/" + v] = os.path.join(media, "videos", v + ".mp4")

    def keys(spec):
        out = set()
        for tok in spec.split():
            if tok.startswith("cat:"):
                out |= {k for k in pictures if k.startswith("cat:") and re.sub(r"\d+$", "", k[4:]) == tok[4:]}
            else:
                assert tok in pictures, tok
                out.add(tok)
        return out

    groups = {"name": {}, "general": {}, "synonym": {}, "caption": {}}
    for k, w in names.items():
        groups["name"].setdefault(article(w), set()).add(k)
    for kind, stems in MONUMENTS.items():
        groups["general"][article(kind)] = {f"mon:{s}" for s in stems.split() if f"mon:{s}" in pictures}
    for w, spec in GENERAL.items():
        groups["general"][article(w)] = keys(spec)
    for w, spec in SYNONYM.items():
        if spec:
            groups["synonym"][article(w)] = keys(spec)
    for k, caption in CAPTIONS.items():
        groups["caption"][caption] = {k}
    for g in groups.values():
        for q, ks in list(g.items()):
            if not ks:
                del g[q]
    return pictures, groups


def rgb224(src, work):
    """What medley-media gives the image encoder: centre square crop, bicubic to 224 px, alpha
    flattened onto white; a still on a plain background fitted whole instead (fit_on_plain)."""
    if isinstance(src, bytes):
        path = os.path.join(work, "pic.webp")
        open(path, "wb").write(src)
        seek = []
    else:
        path, seek = src, []
        if src.endswith(".mp4"):
            d = float(subprocess.check_output(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                                               "-of", "csv=p=0", src]))
            seek = ["-ss", f"{d / 2:.3f}"]
    if not seek:
        fitted = fit_on_plain(path)
        if fitted is not None:
            return fitted
    vf = "crop='min(iw,ih)':'min(iw,ih)',scale=224:224:flags=bicubic+accurate_rnd+full_chroma_int,format=rgba"
    return flatten(ffmpeg_rgba(path, seek, vf, 224, 224))


def ffmpeg_rgba(path, seek, vf, w, h):
    raw = subprocess.check_output(["ffmpeg", "-loglevel", "error", *seek, "-i", path, "-frames:v", "1", "-vf", vf,
                                   "-f", "rawvideo", "-"])
    return np.frombuffer(raw, np.uint8).reshape(h, w, 4).astype(np.float64)


def flatten(px):
    """Alpha onto white."""
    a = px[..., 3:] / 255.0
    return np.floor(px[..., :3] * a + 255 * (1 - a) + 0.5).clip(0, 255).astype(np.uint8)


def fit_on_plain(path):
    """As medley-media's `fit_on_plain` for stills: a non-square picture whose border is one plain
    colour, fitted whole into 224 px and padded with that colour; None otherwise."""
    w, h = map(int, subprocess.check_output(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                                             "stream=width,height", "-of", "csv=p=0", path]).decode().split(",")[:2])
    s = 224 / max(w, h)
    tw, th = min(max(round(w * s), 1), 224), min(max(round(h * s), 1), 224)
    if tw == th:
        return None
    vf = f"scale={tw}:{th}:flags=bicubic+accurate_rnd+full_chroma_int,format=rgba"
    px = flatten(ffmpeg_rgba(path, [], vf, tw, th))
    border = np.concatenate([px[0], px[-1], px[1:-1, 0], px[1:-1, -1]]).astype(np.int64)
    bins, inverse, counts = np.unique(border >> 4, axis=0, return_inverse=True, return_counts=True)
    bg = border[inverse.ravel() == counts.argmax()].sum(0) // counts.max()
    if np.mean(np.abs(border - bg).max(1) <= 24) < 0.9:
        return None
    out = np.empty((224, 224, 3), np.uint8)
    out[:] = bg
    y0, x0 = (224 - th) // 2, (224 - tw) // 2
    out[y0:y0 + th, x0:x0 + tw] = px
    return out


# --- Models --------------------------------------------------------------------------------


class Text:
    """MiniLM as medley's TextEncoder runs it (graph pools and normalises)."""

    def __init__(self):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        d = os.path.join(MODELS, "minilm-l6")
        self.tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        pad = self.tok.padding or {}
        self.tok.enable_padding(pad_id=pad.get("pad_id", 0), pad_token=pad.get("pad_token", "[PAD]"))
        self.tok.enable_truncation(256)
        self.sess = ort.InferenceSession(os.path.join(d, "model.onnx"), providers=["CPUExecutionProvider"])
        self.cache = {}
        self.path = None

    def load(self, path):
        """Keep embeddings across runs (the texts are the keys, so a changed text is re-embedded)."""
        import pickle

        self.path = path
        if os.path.exists(path):
            self.cache = pickle.load(open(path, "rb"))

    def save(self):
        import pickle

        if self.path:
            pickle.dump(self.cache, open(self.path, "wb"))

    def __call__(self, texts):
        todo = sorted({t for t in texts if t not in self.cache}, key=len)
        for i in range(0, len(todo), 64):
            chunk = todo[i:i + 64]
            enc = self.tok.encode_batch(chunk)
            ids = np.array([e.ids for e in enc], np.int64)
            mask = np.array([e.attention_mask for e in enc], np.int64)
            out = self.sess.run(None, {"input_ids": ids, "attention_mask": mask,
                                       "token_type_ids": np.zeros_like(ids)})[0]
            self.cache.update(zip(chunk, out))
        return np.stack([self.cache[t] for t in texts])


def image_probabilities(pictures, work):
    import onnxruntime as ort

    cache = os.path.join(work, "image_probs.npz")
    keys = sorted(pictures)
    if os.path.exists(cache):
        z = np.load(cache, allow_pickle=True)
        if list(z["keys"]) == keys:
            return keys, z["p"]
    sess = ort.InferenceSession(os.path.join(MODELS, "efficientnet-lite0", "model.onnx"),
                                providers=["CPUExecutionProvider"])
    probs = []
    for i in range(0, len(keys), 16):
        x = np.stack([rgb224(pictures[k], work) for k in keys[i:i + 16]]).astype(np.float32)
        x = ((x - 127.0) / 128.0).transpose(0, 3, 1, 2)
        logits = sess.run(["logits"], {"pixel_values": np.ascontiguousarray(x)})[0]
        e = np.exp(logits - logits.max(1, keepdims=True))
        probs.append(e / e.sum(1, keepdims=True))
    p = np.concatenate(probs)
    np.savez(cache, keys=np.array(keys, dtype=object), p=p)
    return keys, p


# --- The bridge and the scores ----------------------------------------------------------------


def label_matrix(text, label_texts, template):
    """One unit row per label: the mean of its texts' embeddings (texts split on ' | ')."""
    rows = []
    alts = [t.split(" | ") for t in label_texts]
    flat = text([template.replace("{}", a) for t in alts for a in t])
    i = 0
    for t in alts:
        v = flat[i:i + len(t)].mean(0)
        i += len(t)
        rows.append(v / np.linalg.norm(v))
    return np.stack(rows)


def bridge(probs, labels, k):
    idx = np.argsort(-probs, axis=1)[:, :k]
    w = np.zeros_like(probs)
    np.put_along_axis(w, idx, np.take_along_axis(probs, idx, 1), 1)
    b = w @ labels
    return b / np.linalg.norm(b, axis=1, keepdims=True)


def ranks(bridges, keys, queries, text):
    """Rank (1-based) of the first target of each query among all items."""
    qs = list(queries)
    sims = text(qs) @ bridges.T
    index = {k: i for i, k in enumerate(keys)}
    out = []
    for q, s in zip(qs, sims):
        order = np.argsort(-s, kind="stable")
        pos = {int(j): r for r, j in enumerate(order, 1)}
        out.append(min(pos[index[k]] for k in queries[q]))
    return np.array(out)


def summary(r):
    return {"n": len(r), "r@1": float(np.mean(r <= 1)), "r@5": float(np.mean(r <= 5)),
            "r@10": float(np.mean(r <= 10)), "median": float(np.median(r)), "mrr": float(np.mean(1.0 / r)),
            "ranks": [int(x) for x in r]}


def fmt(name, s):
    return (f"{name:<52} {s['n']:>4} {100 * s['r@1']:6.1f} {100 * s['r@5']:6.1f} {100 * s['r@10']:6.1f} "
            f"{s['median']:7.1f} {s['mrr']:6.3f}")


HEADER = f"{'variant':<52} {'n':>4} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'median':>7} {'MRR':>6}"


def versus(s, base):
    """Queries ranked better / worse than with the baseline texts (paired, same queries)."""
    a, b = np.array(s["ranks"]), np.array(base["ranks"])
    return f"better {int((a < b).sum()):3d} worse {int((a > b).sum()):3d}"


# --- ImageNet label texts ---------------------------------------------------------------------


def imagenet_variants():
    sys.path.insert(0, HERE)
    import export

    classes = export.imagenet_synsets()

    def hypernyms(wnid, depth):
        """Names of the hypernyms up to `depth` levels up, nearest first (first lemma each)."""
        out, level = [], [wnid[1:]]
        for _ in range(depth):
            level = [h for o in level for h in export.wordnet_noun(o).hypernyms]
            out += [export.wordnet_noun(h).words[0] for h in level]
        return ", ".join(dict.fromkeys(out))

    def no_latin(names):
        # Binomials ("Felis catus") say nothing to a sentence encoder trained on everyday text.
        return [n for n in names if not re.fullmatch(r"[A-Z][a-z]+ [a-z]+", n)] or names

    rows = [(lem, g, hypernyms(w, 1), hypernyms(w, 2)) for w, lem, g in classes]
    v = {
        "a first lemma": [lem[0] for lem, g, h, h2 in rows],
        "b all lemmas": [", ".join(lem) for lem, g, h, h2 in rows],
        "c lemmas: gloss": [f"{', '.join(lem)}: {g}" for lem, g, h, h2 in rows],
        "d lemmas: gloss; a kind of hyp": [f"{', '.join(lem)}: {g}; a kind of {h}" for lem, g, h, h2 in rows],
        "e lemmas, a kind of hyp": [f"{', '.join(lem)}, a kind of {h}" for lem, g, h, h2 in rows],
        "f lemmas (a kind of hyp): gloss": [f"{', '.join(lem)} (a kind of {h}): {g}" for lem, g, h, h2 in rows],
        "g mean(lemma each | gloss)": [" | ".join(lem + [g]) for lem, g, h, h2 in rows],
        "h mean(lemma each)": [" | ".join(lem) for lem, g, h, h2 in rows],
        "i mean(lemma each | gloss | hyp)": [" | ".join(lem + [g, h]) for lem, g, h, h2 in rows],
        "j mean(lemma each | lemmas: gloss)": [" | ".join(lem + [f"{', '.join(lem)}: {g}"]) for lem, g, h, h2 in rows],
        "k mean(lemma each | hyp)": [" | ".join(lem + [h]) for lem, g, h, h2 in rows],
        "l mean(lemma each, no latin | gloss)": [" | ".join(no_latin(lem) + [g]) for lem, g, h, h2 in rows],
        "m lemmas no latin: gloss": [f"{', '.join(no_latin(lem))}: {g}" for lem, g, h, h2 in rows],
        "n lemmas no latin, a kind of hyp: gloss": [f"{', '.join(no_latin(lem))}, a kind of {h}: {g}"
                                                    for lem, g, h, h2 in rows],
        "o as n, hyp 2 levels": [f"{', '.join(no_latin(lem))}, a kind of {h2}: {g}" for lem, g, h, h2 in rows],
        "p mean(lemmas no latin, a kind of hyp: gloss | lemma each)": [
            " | ".join([f"{', '.join(no_latin(lem))}, a kind of {h}: {g}"] + no_latin(lem)) for lem, g, h, h2 in rows],
        "q mean(lemmas no latin, a kind of hyp: gloss | first lemma)": [
            f"{', '.join(no_latin(lem))}, a kind of {h}: {g} | {lem[0]}" for lem, g, h, h2 in rows],
    }
    if hasattr(export, "imagenet_label_texts"):
        v["export.py"] = export.imagenet_label_texts()
    return v


def measure_images(args, text):
    pictures, groups = picture_set(args.gcompris, os.path.join(HOME, "media"))
    keys, probs = image_probabilities(pictures, args.work)
    print(f"{len(keys)} pictures; queries: " + ", ".join(f"{g} {len(q)}" for g, q in groups.items()))
    variants = {k: t for k, t in imagenet_variants().items() if not args.variants or k.split()[0] in args.variants}
    results, rows, base = {}, [], {}
    print(HEADER + "   (all query groups, queries 'a {word}')")
    for name, texts in variants.items():
        for t in args.templates:
            labels = label_matrix(text, texts, t)
            text.save()
            for k in args.top_k:
                b = bridge(probs, labels, k)
                per = {g: ranks(b, keys, q, text) for g, q in groups.items()}
                allr = np.concatenate(list(per.values()))
                bare = ranks(b, keys, {re.sub(r"^an? ", "", q): ts for q, ts in
                                       {**groups["name"], **groups["general"], **groups["synonym"]}.items()}, text)
                res = {"all": summary(allr), **{g: summary(r) for g, r in per.items()}, "bare words": summary(bare)}
                results[f"{name} | {t} | k={k}"] = res
                rows.append((name, t, k, res))
                base.setdefault(k, res)
                print(fmt(f"{name} [{t}] k={k}", res["all"]), versus(res["all"], base[k]["all"]), flush=True)
    return results, rows


# --- Music tag texts --------------------------------------------------------------------------

INSTRUMENTS = {"accordion": "accordion", "banjo": "banjo", "bongo": "bongo drums", "castanets": "castanets",
               "cello": "cello", "clarinet": "clarinet", "cymbal": "cymbal", "drum_kit": "drum kit",
               "electric_guitar": "electric guitar", "flute_traversiere": "flute", "guitar": "acoustic guitar",
               "harmonica": "harmonica", "harp": "harp", "horn": "french horn", "maracas": "maracas",
               "organ": "organ", "piano": "piano", "saxophone": "saxophone", "snare_drum": "snare drum",
               "tambourine": "tambourine", "timpani": "timpani", "triangle": "triangle", "trombone": "trombone",
               "trumpet": "trumpet", "tuba": "tuba", "violin": "violin"}
WORLD_MUSIC = {"africa": "african drums", "america": "rock and roll", "australia": "didgeridoo",
               "ireland": "irish fiddle music", "italy": "an opera singer", "japan": "taiko drums",
               "mexico": "mariachi band", "middleeast": "a woman singing a turkish song",
               "beethoven": "a classical symphony orchestra"}


# Broader words, several clips each (GCompris' own descriptions of the world-music clips).
MUSIC_DESCRIBED = {
    "drums": "africa japan drum_kit snare_drum bongo timpani",
    "percussion": "africa japan drum_kit snare_drum bongo timpani castanets cymbal maracas tambourine triangle",
    "brass instruments": "trumpet trombone tuba horn",
    "string instruments": "violin cello harp guitar banjo electric_guitar",
    "guitar music": "guitar electric_guitar mexico",
    "a woman singing": "middleeast",
    "a man singing": "italy",
    "classical music": "beethoven italy",
    "folk music": "ireland mexico",
}


def music_texts(model_id):
    """The tag texts export_musicnn.py writes (read from its source: it imports TensorFlow)."""
    tree = ast.parse(open(os.path.join(HERE, "export_musicnn.py")).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "TAG_TEXTS":
            return ast.literal_eval(node.value)[model_id]
    return None


def music_probabilities(model_id, clips, work):
    import onnxruntime as ort

    cache = os.path.join(work, f"{model_id}_probs.npz")
    keys = sorted(clips)
    if os.path.exists(cache):
        z = np.load(cache, allow_pickle=True)
        if list(z["keys"]) == keys:
            return keys, z["p"]
    sess = ort.InferenceSession(os.path.join(MODELS, model_id, "model.onnx"), providers=["CPUExecutionProvider"])
    out = []
    for k in keys:
        src = clips[k]
        if isinstance(src, bytes):
            path = os.path.join(work, "clip.ogg")
            open(path, "wb").write(src)
        else:
            path = src
        raw = subprocess.check_output(["ffmpeg", "-loglevel", "error", "-i", path, "-ac", "1", "-ar", "16000",
                                       "-t", "60", "-f", "f32le", "-"])
        x = np.frombuffer(raw, np.float32)
        w = 47616
        x = np.pad(x, (0, max(0, w - len(x))))
        windows = np.stack([x[i:i + w] for i in range(0, len(x) - w + 1, w)])
        out.append(sess.run(["tags"], {"waveform": windows})[0].mean(0))
    p = np.stack(out)
    np.savez(cache, keys=np.array(keys, dtype=object), p=p)
    return keys, p


def measure_music(args, text):
    files = {}
    for rcc in ("instruments", "explore_world_music"):
        for k, v in rcc_files(os.path.join(args.gcompris, rcc + ".rcc")).items():
            if k.endswith(".ogg"):
                files[os.path.basename(k)[:-4]] = v
    clips = {k: files[k] for k in [*INSTRUMENTS, *WORLD_MUSIC]}
    for f in os.listdir(os.path.join(HOME, "media", "music")):
        clips["mp3/" + f] = os.path.join(HOME, "media", "music", f)
    queries = {"instrument": {q: {k} for k, q in INSTRUMENTS.items()},
               "style": {q: {k} for k, q in WORLD_MUSIC.items()},
               "described": {q: set(ks.split()) for q, ks in MUSIC_DESCRIBED.items()}}
    results = {}
    for model_id in ("musicnn-mtt", "musicnn-msd"):
        keys, probs = music_probabilities(model_id, clips, args.work)
        tags = open(os.path.join(MODELS, model_id, "labels.txt")).read().splitlines()
        variants = {"a tag name": tags}
        written = music_texts(model_id)
        if written:
            variants["b written text"] = [written[t] for t in tags]
            variants["c mean(tag | written text)"] = [f"{t} | {written[t]}" for t in tags]
            variants["d first alternative"] = [written[t].split(" | ")[0] for t in tags]
        print(f"\n{model_id}: {len(keys)} clips, {sum(len(q) for q in queries.values())} queries")
        print(HEADER)
        for name, texts in variants.items():
            for t in ["{}", "music that is {}", "music with {}"]:
                labels = label_matrix(text, texts, t)
                for k in args.top_k:
                    b = bridge(probs, labels, k)
                    per = {g: ranks(b, keys, q, text) for g, q in queries.items()}
                    allr = np.concatenate(list(per.values()))
                    res = {"all": summary(allr), **{g: summary(r) for g, r in per.items()}}
                    results[f"{model_id} | {name} | {t} | k={k}"] = res
                    print(fmt(f"{name} [{t}] k={k}", res["all"]),
                          " ".join(f"{g} {res[g]['mrr']:.3f}" for g in queries), flush=True)
            text.save()
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gcompris", default="/usr/share/gcompris-qt/rcc")
    ap.add_argument("--work", default="/tmp/medley-label-texts")
    ap.add_argument("--only", choices=["image", "music"])
    ap.add_argument("--top-k", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--variants", nargs="+", help="letters of the ImageNet variants to run (default all)")
    ap.add_argument("--templates", nargs="+", default=["{}", "a photo of a {}"])
    ap.add_argument("--json", help="write every result here")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    text = Text()
    text.load(os.path.join(args.work, "text_embeddings.pkl"))
    results = {}
    if args.only != "music":
        res, rows = measure_images(args, text)
        results.update(res)
        best = sorted(rows, key=lambda r: -r[3]["all"]["mrr"])[:15]
        print("\nbest by MRR (all groups); then R@1 / R@5 per group: name general synonym caption bare-words")
        for name, t, k, res in best:
            print(fmt(f"{name} [{t}] k={k}", res["all"]),
                  " ".join(f"{100 * res[g]['r@1']:3.0f}/{100 * res[g]['r@5']:3.0f}"
                           for g in ["name", "general", "synonym", "caption", "bare words"]))
    if args.only != "image":
        results.update(measure_music(args, text))
    if args.json:
        json.dump(results, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
