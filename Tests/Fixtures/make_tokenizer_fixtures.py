#!/usr/bin/env python3
"""Golden token ids from open_clip's tokenizer, for Tests/CLIPTests/TokenizerTests.swift.

    python3 Tests/Fixtures/make_tokenizer_fixtures.py

Writes (committed; the tests need no Python):
  Tests/Fixtures/tokenizer/golden.json    strings, open_clip's cleaned text, and their ids
  Tests/Fixtures/tokenizer/tiny_bpe.txt.gz  the first 1000 merges of the CLIP vocabulary (a small
                                            vocabulary like the ones tiny test models use) + its goldens

Needs: open_clip_torch (which brings ftfy and regex), torch. Reads the vocabulary that open_clip ships,
which is the same file as Sources/CLIP/Resources/bpe_simple_vocab_16e6.txt.gz.

The Swift cleanup reproduces ftfy.fix_text except its mojibake repair (`fix_encoding`). Strings whose
result depends on that step are listed under "excluded" with the reason, not compared.
"""
import gzip
import json
import os
import random

import ftfy
import open_clip
from open_clip import tokenizer as oc_tok
from torchvision.datasets.flowers102 import Flowers102

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "tokenizer")

# ---------------------------------------------------------------------------------------------
# Class names as CoOp's split files / variant lists spell them ("_" shown as a space, as the data
# readers produce them). EuroSAT, DTD, Pets, Caltech101, Food101 and Flowers102 are complete;
# Aircraft and Cars are partial lists, enough for their naming styles (model years, slashes, hyphens).
EUROSAT = ["Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road",
           "Industrial Buildings", "Pasture Land", "Permanent Crop Land", "Residential Buildings",
           "River", "Sea or Lake"]
DTD = ["banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed", "cracked",
       "crosshatched", "crystalline", "dotted", "fibrous", "flecked", "freckled", "frilly", "gauzy",
       "grid", "grooved", "honeycombed", "interlaced", "knitted", "lacelike", "lined", "marbled",
       "matted", "meshed", "paisley", "perforated", "pitted", "pleated", "polka-dotted", "porous",
       "potholed", "scaly", "smeared", "spiralled", "sprinkled", "stained", "stratified", "striped",
       "studded", "swirly", "veined", "waffled", "woven", "wrinkled", "zigzagged"]
PETS = ["abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle",
        "bengal", "birman", "bombay", "boxer", "british_shorthair", "chihuahua", "egyptian_mau",
        "english_cocker_spaniel", "english_setter", "german_shorthaired", "great_pyrenees", "havanese",
        "japanese_chin", "keeshond", "leonberger", "maine_coon", "miniature_pinscher", "newfoundland",
        "persian", "pomeranian", "pug", "ragdoll", "russian_blue", "saint_bernard", "samoyed",
        "scottish_terrier", "shiba_inu", "siamese", "sphynx", "staffordshire_bull_terrier",
        "wheaten_terrier", "yorkshire_terrier"]
CALTECH = ["face", "leopard", "motorbike", "accordion", "airplane", "anchor", "ant", "barrel", "bass",
           "beaver", "binocular", "bonsai", "brain", "brontosaurus", "buddha", "butterfly", "camera",
           "cannon", "car_side", "ceiling_fan", "cellphone", "chair", "chandelier", "cougar_body",
           "cougar_face", "crab", "crayfish", "crocodile", "crocodile_head", "cup", "dalmatian",
           "dollar_bill", "dolphin", "dragonfly", "electric_guitar", "elephant", "emu", "euphonium",
           "ewer", "ferry", "flamingo", "flamingo_head", "garfield", "gerenuk", "gramophone",
           "grand_piano", "hawksbill", "headphone", "hedgehog", "helicopter", "ibis", "inline_skate",
           "joshua_tree", "kangaroo", "ketch", "lamp", "laptop", "llama", "lobster", "lotus", "mandolin",
           "mayfly", "menorah", "metronome", "minaret", "nautilus", "octopus", "okapi", "pagoda", "panda",
           "pigeon", "pizza", "platypus", "pyramid", "revolver", "rhino", "rooster", "saxophone",
           "schooner", "scissors", "scorpion", "sea_horse", "snoopy", "soccer_ball", "stapler",
           "starfish", "stegosaurus", "stop_sign", "strawberry", "sunflower", "tick", "trilobite",
           "umbrella", "watch", "water_lilly", "wheelchair", "wild_cat", "windsor_chair", "wrench",
           "yin_yang"]
FOOD = ["apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "beef_tartare", "beet_salad",
        "beignets", "bibimbap", "bread_pudding", "breakfast_burrito", "bruschetta", "caesar_salad",
        "cannoli", "caprese_salad", "carrot_cake", "ceviche", "cheese_plate", "cheesecake",
        "chicken_curry", "chicken_quesadilla", "chicken_wings", "chocolate_cake", "chocolate_mousse",
        "churros", "clam_chowder", "club_sandwich", "crab_cakes", "creme_brulee", "croque_madame",
        "cup_cakes", "deviled_eggs", "donuts", "dumplings", "edamame", "eggs_benedict", "escargots",
        "falafel", "filet_mignon", "fish_and_chips", "foie_gras", "french_fries", "french_onion_soup",
        "french_toast", "fried_calamari", "fried_rice", "frozen_yogurt", "garlic_bread", "gnocchi",
        "greek_salad", "grilled_cheese_sandwich", "grilled_salmon", "guacamole", "gyoza", "hamburger",
        "hot_and_sour_soup", "hot_dog", "huevos_rancheros", "hummus", "ice_cream", "lasagna",
        "lobster_bisque", "lobster_roll_sandwich", "macaroni_and_cheese", "macarons", "miso_soup",
        "mussels", "nachos", "omelette", "onion_rings", "oysters", "pad_thai", "paella", "pancakes",
        "panna_cotta", "peking_duck", "pho", "pizza", "pork_chop", "poutine", "prime_rib",
        "pulled_pork_sandwich", "ramen", "ravioli", "red_velvet_cake", "risotto", "samosa", "sashimi",
        "scallops", "seaweed_salad", "shrimp_and_grits", "spaghetti_bolognese", "spaghetti_carbonara",
        "spring_rolls", "steak", "strawberry_shortcake", "sushi", "tacos", "takoyaki", "tiramisu",
        "tuna_tartare", "waffles"]
FLOWERS = list(Flowers102.classes)
AIRCRAFT = ["707-320", "727-200", "737-200", "737-300", "737-400", "737-500", "737-600", "737-700",
            "737-800", "737-900", "747-100", "747-200", "747-300", "747-400", "757-200", "757-300",
            "767-200", "767-300", "767-400", "777-200", "777-300", "A300B4", "A310", "A318", "A319",
            "A320", "A321", "A330-200", "A330-300", "A340-200", "A340-300", "A340-500", "A340-600",
            "A380", "ATR-42", "ATR-72", "An-12", "BAE 146-200", "BAE 146-300", "BAE-125",
            "Beechcraft 1900", "Boeing 717", "C-130", "C-47", "CRJ-200", "CRJ-700", "CRJ-900",
            "Cessna 172", "Cessna 208", "Cessna 525", "Cessna 560", "Challenger 600", "DC-10", "DC-3",
            "DC-6", "DC-8", "DC-9-30", "DH-82", "DHC-1", "DHC-6", "DHC-8-100", "DHC-8-300", "DR-400",
            "Dornier 328", "E-170", "E-190", "E-195", "EMB-120", "ERJ 135", "ERJ 145", "Embraer Legacy 600",
            "Eurofighter Typhoon", "F-16A/B", "F/A-18", "Falcon 2000", "Falcon 900", "Fokker 100",
            "Fokker 50", "Fokker 70", "Global Express", "Gulfstream IV", "Gulfstream V", "Hawk T1",
            "Il-76", "L-1011", "MD-11", "MD-80", "MD-87", "MD-90", "Metroliner", "Model B200", "PA-28",
            "SR-20", "Saab 2000", "Saab 340", "Spitfire", "Tornado", "Tu-134", "Tu-154", "Yak-42"]
CARS = ["2000 AM General Hummer SUV", "2012 Acura RL Sedan", "2012 Acura TL Sedan",
        "2008 Acura TL Type-S", "2012 Acura TSX Sedan", "2001 Acura Integra Type R",
        "2012 Acura ZDX Hatchback", "2012 Aston Martin V8 Vantage Convertible",
        "2012 Aston Martin V8 Vantage Coupe", "2012 Aston Martin Virage Convertible",
        "2012 Audi R8 Coupe", "1994 Audi 100 Sedan", "1994 Audi V8 Sedan", "2011 Audi TT Hatchback",
        "2012 Audi S4 Sedan", "2012 BMW ActiveHybrid 5 Sedan", "2012 BMW 1 Series Convertible",
        "2012 BMW X5 SUV", "2012 BMW M3 Coupe", "2009 Bentley Arnage Sedan",
        "2012 Bugatti Veyron 16.4 Convertible", "2012 Buick Rainier SUV",
        "2012 Cadillac Escalade EXT Crew Cab", "2010 Chevrolet HHR SS",
        "2012 Chevrolet Silverado 1500 Hybrid Crew Cab", "2007 Chevrolet Express Cargo Van",
        "2012 Chrysler Town and Country Minivan", "2012 Dodge Ram Pickup 3500 Crew Cab",
        "2009 Dodge Sprinter Cargo Van", "2012 Eagle Talon Hatchback", "2012 FIAT 500 Abarth",
        "2012 Ferrari 458 Italia Convertible", "2007 Ford F-150 Regular Cab",
        "2012 Ford F-450 Super Duty Crew Cab", "2012 GMC Savana Van", "2012 Hyundai Veloster Hatchback",
        "2012 Jeep Grand Cherokee SUV", "2012 Lamborghini Gallardo LP 570-4 Superleggera",
        "2012 Land Rover LR2 SUV", "2012 McLaren MP4-12C Coupe", "2012 Mercedes-Benz C-Class Sedan",
        "2012 Mercedes-Benz Sprinter Van", "2011 Mazda Tribute SUV", "2012 Porsche Panamera Sedan",
        "2012 Rolls-Royce Ghost Sedan", "2012 smart fortwo Convertible", "2012 Tesla Model S Sedan",
        "2012 Toyota 4Runner SUV", "1993 Volvo 240 Sedan", "2007 Volvo XC90 SUV"]

DATASETS = [
    ("EuroSAT", EUROSAT, "a centered satellite photo of {}."),
    ("DescribableTextures", DTD, "{} texture."),
    ("OxfordPets", PETS, "a photo of a {}, a type of pet."),
    ("Caltech101", CALTECH, "a photo of a {}."),
    ("Food101", FOOD, "a photo of {}, a type of food."),
    ("OxfordFlowers", FLOWERS, "a photo of a {}, a type of flower."),
    ("FGVCAircraft", AIRCRAFT, "a photo of a {}, a type of aircraft."),
    ("StanfordCars", CARS, "a photo of a {}."),
]

HANDWRITTEN = [
    # plain text, punctuation, digits
    "", " ", "a", "A", "hello world", "Hello, World!", "a photo of a dog.", "A PHOTO OF A CAT",
    "!!!", "...", "?!", "--", "—", "(a) [b] {c}", "@user #hashtag", "$100 and 50%", "a/b\\c|d",
    "~`^_=+*", "<>", "<< >>", "1234567890", "3.14159", "1,000,000", "2023-01-15", "12:30pm",
    "v1.2.3-beta", "0", "00", "007", "x86_64", "ResNet50", "ViT-B/32", "gpt-4o", "H2O", "CO₂",
    "²³¹", "½ cup", "Ⅻ o'clock", "٣ ٤ ٥", "१२३", "①②③", "e=mc^2", "a+b=c", "#1!", "100km/h",
    # apostrophes and contractions
    "it's", "IT'S", "It's", "don't", "DON'T", "Don't", "we're", "WE'RE", "they've", "THEY'VE", "I'm",
    "I'M", "you'll", "YOU'LL", "he'd", "HE'D", "'s", "'S", "''", "'''s", "rock'n'roll", "o'clock",
    "'tis", "dogs'", "the dog's bone", "James's", "it'sn't", "y'all'd've", "'m'll'd", "''s'", "!'s",
    "it\u2019s", "don\u2018t", "\u201cquoted\u201d", "\u201equote\u201c", "l'homme", "aujourd'hui",
    "it'ſ", "'ſ", "<ſtart_of_text>",
    # whitespace
    "  leading", "trailing   ", "  both  ", "many     spaces", "tab\tseparated\ttext", "new\nline",
    "windows\r\nline", "old mac\rline", "\n\n\nnewlines\n\n", "\t \n mixed \r\n whitespace \t",
    "non\u00a0breaking", "em\u2003space", "ideographic\u3000space", "line\u2028separator",
    "para\u2029separator", "next\u0085line", "zero\u200bwidth", "vertical\x0btab", "form\x0cfeed",
    "file\x1csep", "unit\x1fsep",
    # accents, case, normalisation
    "café", "CAFÉ", "naïve", "crème brûlée", "Zürich", "São Paulo", "ÅNGSTRÖM", "Ærøskøbing",
    "piñata", "jalapeño", "façade", "Dvořák", "Łódź", "Ağrı", "İstanbul", "ISTANBUL", "straße",
    "STRASSE", "ǅemal", "Ǆ", "ǈ", "ĳsselmeer", "ﬁsh ﬂower ﬀ ﬃ ﬄ ﬅ ﬆ", "cafe\u0301", "e\u0301\u0301",
    "a\u0308o\u0308u\u0308", "\u212bngstrom", "\u2126hm", "K\u212a", "ΟΔΟΣ", "ΣΑΣ", "Σ", "ΑΣ.",
    "ὈΔΥΣΣΕΎΣ", "Γειά σου Κόσμε", "Привет мир", "ПРИВЕТ", "Ωμέγα", "ϴ", "ﬀ", "ᾼ", "ͅ", "α\u0345",
    "b\u0345c", "!\u0345!", "ǰ", "ŉ", "ß", "ẞ", "ı", "ǈ ǋ ǲ",
    # full-width / half-width
    "ＬＯＵＤ　ＮＯＩＳＥＳ", "ｆｕｌｌｗｉｄｔｈ １２３", "ｶﾀｶﾅ", "ﾊﾟﾝ", "Ｕターン", "￥１００", "￡５",
    # scripts
    "一只猫的照片", "東京タワー", "日本語のテキスト", "한국어 텍스트", "नमस्ते दुनिया", "مرحبا بالعالم",
    "שלום עולם", "สวัสดีชาวโลก", "Xin chào thế giới", "ελληνικά", "ქართული", "Հայերեն", "ትግርኛ",
    "ᚠᚢᚦ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝐁𝐨𝐥𝐝", "ℌ𝔢𝔩𝔩𝔬", "ⓐⓑⓒ", "Ⓐ", "🄰",
    # emoji and symbols
    "🐶 dog", "👍", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷 🇯🇵", "❤️", "♥", "☺", "✓ done", "★★★☆☆", "→ ← ↑ ↓",
    "∑∫√∞", "≤≥≠", "©®™", "°C", "µm", "§ ¶", "€ £ ¥ ₹", "🙂🙃", "😂😂😂", "🏳️‍🌈", "a🐶b", "🐶🐶🐶🐶🐶🐶🐶🐶",
    "\U0001f9ec dna", "\U000e0067 tag",
    # HTML entities and markup
    "&amp;", "AT&amp;T", "AT&T", "&lt;b&gt;bold&lt;/b&gt;", "&quot;quoted&quot;", "&#39;", "&#x27;",
    "&#X27;", "&apos;", "&nbsp;space", "caf&eacute;", "CAF&EACUTE;", "&Eacute;", "&copy; 2024",
    "&hellip;", "&mdash;", "&ndash;", "&rsquo;", "&ldquo;hi&rdquo;", "&amp;amp;", "&amp;amp;amp;",
    "&amp;lt;", "&ampx", "&amp", "&lt", "&notit;", "&notin;", "&not", "&copy", "&copyx", "&frac12;",
    "&#0;", "&#13;", "&#128;", "&#150;", "&#159;", "&#x110000;", "&#xD800;", "&#1;", "&#x7f;",
    "&#65;&#66;&#67;", "&#x41;&#x42;", "&#65", "&#x41", "&#;", "&#x;", "&;", "& ;", "&&amp;",
    "&unknownentity;", "&AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA;", "&NewLine;", "&bigstar;",
    "a < b &amp; c", "<b>bold</b> &amp; more", "line one &amp;\nline <two> &amp;", "&lt;\n&amp;",
    "&#9731; snowman", "&#128512;", "&#x1F600;", "&#99999999999999999999;", "&#00065;",
    "&SZLIG;", "BUNDESSTRA&SZLIG;E", "P&EACUTE;REZ", "&ntilde; &Ntilde; &NTILDE; &nTILDE;",
    # control characters and terminal escapes
    "null\x00byte", "bell\x07", "\x1b[31mred\x1b[0m text", "\x1b[1;32mgreen", "esc\x1bonly",
    "del\x7f", "bom\ufeffinside", "\ufeffbom", "obj\ufffc", "arabic\u206acontrol", "soft\u00adhyphen",
    "zwj\u200dzwnj\u200c", "rtl\u200fmark", "\ufffd replacement",
    # special-token look-alikes
    "<start_of_text>", "<end_of_text>", "<START_OF_TEXT>", "a<end_of_text>b",
    "<start_of_text> hello <end_of_text>", "<|startoftext|>", "<|endoftext|>", "<|endoftext|> x",
    "!<start_of_text>", "<start_of_text", "start_of_text>",
    # mojibake that ftfy's fix_encoding repairs (expected to be excluded), and C1 controls it keeps
    "cafÃ©", "doesnÃ¢â‚¬â„¢t", "â€œquotedâ€\x9d", "\x93quoted\x94", "caf\x82 x", "price \x80 5",
    # long words, URLs, code
    "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "https://example.com/path?x=1&y=2#frag", "user.name+tag@example.co.uk", "snake_case_name",
    "camelCaseName", "SCREAMING_SNAKE", "kebab-case-name", "C:\\Windows\\System32",
    "def f(x): return x**2", "print('hello')", "{\"key\": [1, 2, 3]}", "SELECT * FROM t;",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "abababababababababababab", "lolololololololol",
    "hahahahahaha!!!", "Mississippi", "antidisestablishmentarianism", "Llanfairpwllgwyngyll",
    # CoOp-style prompts
    "X X X X X X X X X X X X X X X X pink primrose.", "X X X X X X X X X X X X X X X X Annual Crop Land.",
    "X X X X X X X X X X X X X X X X 737-800.", "X X X X abyssinian.",
]

LONG = [
    " ".join(["word"] * 100),
    " ".join(["the quick brown fox jumps over the lazy dog"] * 10),
    "a " * 75, "a " * 76, "a " * 74, "a " * 73,
    "🐶" * 40,
    "".join(chr(0x4E00 + i) for i in range(80)),
    "antidisestablishmentarianism " * 20,
    "1" * 100,
    "! " * 200,
    "&amp; " * 80,
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut "
    "labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris "
    "nisi ut aliquip ex ea commodo consequat.",
]


def random_strings(count, seed=1234):
    """Seeded random mixtures of the character kinds the pre-tokenizer and cleanup distinguish."""
    rng = random.Random(seed)
    pools = [
        "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " ", "  \t\n",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "éèêëàâäîïôöùûüçñÿœæÉÈÀÇ", "αβγδεζηθΣσςΩ",
        "абвгдежзийкЖЗИЙ", "的一是不了人我在有他", "あいうえおカキクケコ", "가나다라마", "🐶🐱🐭👍🏽❤️🇫🇷",
        "²³½①Ⅻ٣१", "\u0301\u0308\u0345\u200d", "’‘“”«»", "ﬁﬂＡＢ１２", "&amp;&lt;&#39;&eacute;",
    ]
    out = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 12)):
            pool = rng.choice(pools)
            parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 6))) if len(pool) > 1 else pool)
            if pool.startswith("&"):
                parts[-1] = rng.choice(["&amp;", "&lt;", "&#39;", "&eacute;", "&"])
        out.append("".join(parts))
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    strings = []
    for _, names, template in DATASETS:
        for name in names:
            spaced = name.replace("_", " ")
            strings.append(template.format(spaced))
    for names in (EUROSAT, DTD, PETS, AIRCRAFT):
        strings += [n.replace("_", " ") for n in names]
    strings += HANDWRITTEN + LONG + random_strings(150)

    seen, unique = set(), []
    for s in strings:
        if s not in seen:
            seen.add(s)
            unique.append(s)

    tok = oc_tok.SimpleTokenizer()
    assert tok.sot_token_id == 49406 and tok.eot_token_id == 49407 and tok.vocab_size == 49408

    cases, excluded = [], []
    for s in unique:
        # The Swift side reproduces fix_text with fix_encoding off; compare only where that is all of it.
        if ftfy.fix_text(s) != ftfy.fix_text(s, fix_encoding=False):
            excluded.append({"text": s, "reason": "ftfy repairs mojibake (fix_encoding), not reproduced"})
            continue
        row = tok(s)[0].tolist()
        encoded = tok.encode(s)
        full = [tok.sot_token_id] + encoded + [tok.eot_token_id]
        length = min(len(full), 77)
        assert row[:length] == (full[:76] + [tok.eot_token_id] if len(full) > 77 else full)
        assert all(v == 0 for v in row[length:])
        case = {"text": s, "clean": oc_tok._clean_lower(s), "ids": row[:length]}
        if len(full) > 77:
            case["encoded"] = encoded          # the untruncated ids, for encode()
        cases.append(case)

    golden = {
        "source": "open_clip %s SimpleTokenizer, bpe_simple_vocab_16e6.txt.gz, context 77" % open_clip.__version__,
        "ftfy": ftfy.__version__,
        "sot": tok.sot_token_id, "eot": tok.eot_token_id, "vocab_size": tok.vocab_size,
        "cases": cases,
        "excluded": excluded,
    }

    # A small vocabulary: the header line and the first 1000 merges, newline-terminated like the
    # original. open_clip gives the trailing empty line a vocabulary slot: 512 + 1001 + 2 entries.
    raw = gzip.open(oc_tok.default_bpe()).read().decode("utf-8").split("\n")
    tiny_text = "\n".join(raw[:1001]) + "\n"
    tiny_path = os.path.join(OUT, "tiny_bpe.txt.gz")
    with open(tiny_path, "wb") as f:
        f.write(gzip.compress(tiny_text.encode("utf-8"), mtime=0))
    tiny = oc_tok.SimpleTokenizer(bpe_path=tiny_path)
    tiny_cases = []
    for s in unique[::7][:80] + LONG[:3]:
        if ftfy.fix_text(s) != ftfy.fix_text(s, fix_encoding=False):
            continue
        row = tiny(s)[0].tolist()
        full = [tiny.sot_token_id] + tiny.encode(s) + [tiny.eot_token_id]
        tiny_cases.append({"text": s, "ids": row[:min(len(full), 77)]})
    golden["tiny"] = {"file": "tiny_bpe.txt.gz", "sot": tiny.sot_token_id, "eot": tiny.eot_token_id,
                      "vocab_size": tiny.vocab_size, "cases": tiny_cases}

    with open(os.path.join(OUT, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")
    print("cases", len(cases), "excluded", len(excluded), "tiny cases", len(tiny_cases),
          "tiny vocab", tiny.vocab_size, "sot", tiny.sot_token_id)
    for e in excluded:
        print("  excluded:", repr(e["text"]))


if __name__ == "__main__":
    main()
