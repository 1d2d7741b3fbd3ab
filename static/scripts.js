// Which scripts a name is written in, shown beside it when that is not Latin alone. The
// server makes names that look alike one name (UTS #39 skeletons, docs/protocol.md), but a
// name in another script, or with one letter of another script, may still look like a
// name someone knows: its tag says so, whatever its colour.

// A letter of neither Latin nor the scripts every script shares (digits, punctuation,
// combining marks). Letters a browser knows no script for count as another script.
const OTHER = /[^\p{Script=Latin}\p{Script=Common}\p{Script=Inherited}]/u;

// Unicode's scripts, the most used first: a character is tried against each in turn.
const SCRIPTS = [
  "Cyrillic", "Greek", "Arabic", "Hebrew", "Han", "Hiragana", "Katakana", "Hangul", "Devanagari",
  "Bengali", "Tamil", "Telugu", "Thai", "Armenian", "Georgian", "Cherokee", "Gujarati", "Gurmukhi",
  "Kannada", "Malayalam", "Sinhala", "Oriya", "Ethiopic", "Khmer", "Lao", "Myanmar", "Tibetan",
  "Mongolian", "Syriac", "Thaana", "Nko", "Tifinagh", "Canadian_Aboriginal", "Coptic", "Bopomofo",
  "Yi", "Vai", "Lisu", "Adlam", "Osage", "Runic", "Ogham", "Glagolitic", "Gothic", "Braille",
  "Ahom", "Anatolian_Hieroglyphs", "Avestan", "Balinese", "Bamum", "Bassa_Vah", "Batak",
  "Bhaiksuki", "Brahmi", "Buginese", "Buhid", "Carian", "Caucasian_Albanian", "Chakma", "Cham",
  "Chorasmian", "Cuneiform", "Cypriot", "Cypro_Minoan", "Deseret", "Dives_Akuru", "Dogra",
  "Duployan", "Egyptian_Hieroglyphs", "Elbasan", "Elymaic", "Grantha", "Gunjala_Gondi",
  "Hanifi_Rohingya", "Hanunoo", "Hatran", "Imperial_Aramaic", "Inscriptional_Pahlavi",
  "Inscriptional_Parthian", "Javanese", "Kaithi", "Kawi", "Kayah_Li", "Kharoshthi",
  "Khitan_Small_Script", "Khojki", "Khudawadi", "Lepcha", "Limbu", "Linear_A", "Linear_B", "Lycian",
  "Lydian", "Mahajani", "Makasar", "Mandaic", "Manichaean", "Marchen", "Masaram_Gondi",
  "Medefaidrin", "Meetei_Mayek", "Mende_Kikakui", "Meroitic_Cursive", "Meroitic_Hieroglyphs", "Miao",
  "Modi", "Mro", "Multani", "Nabataean", "Nag_Mundari", "Nandinagari", "New_Tai_Lue", "Newa",
  "Nushu", "Nyiakeng_Puachue_Hmong", "Ol_Chiki", "Old_Hungarian", "Old_Italic", "Old_North_Arabian",
  "Old_Permic", "Old_Persian", "Old_Sogdian", "Old_South_Arabian", "Old_Turkic", "Old_Uyghur",
  "Osmanya", "Pahawh_Hmong", "Palmyrene", "Pau_Cin_Hau", "Phags_Pa", "Phoenician", "Psalter_Pahlavi",
  "Rejang", "Samaritan", "Saurashtra", "Sharada", "Shavian", "Siddham", "SignWriting", "Sogdian",
  "Sora_Sompeng", "Soyombo", "Sundanese", "Syloti_Nagri", "Tagalog", "Tagbanwa", "Tai_Le",
  "Tai_Tham", "Tai_Viet", "Takri", "Tangsa", "Tangut", "Tirhuta", "Toto", "Ugaritic", "Vithkuqi",
  "Wancho", "Warang_Citi", "Yezidi", "Zanabazar_Square",
];

let patterns = null; // [name, RegExp], made on first use

function scriptOf(char) {
  if (!OTHER.test(char)) return "Latin";
  patterns ??= SCRIPTS.flatMap((script) => {
    try {
      return [[script.replaceAll("_", " "), new RegExp(`\\p{Script=${script}}`, "u")]];
    } catch {
      return []; // a script newer than this browser
    }
  });
  return patterns.find(([, pattern]) => pattern.test(char))?.[0] ?? "another script";
}

const known = new Map(); // name -> its tag's text and title, or null
const KNOWN_AT_MOST = 1000;

function describe(name) {
  if (known.has(name)) return known.get(name);
  let description = null;
  if (OTHER.test(name)) {
    const scripts = [];
    for (const char of name) {
      if (!/[\p{Script=Common}\p{Script=Inherited}]/u.test(char)) {
        const script = scriptOf(char);
        if (!scripts.includes(script)) scripts.push(script);
      }
    }
    const listed = scripts.length > 1 ? `${scripts.slice(0, -1).join(", ")} and ${scripts.at(-1)}` : scripts[0];
    description = {
      text: scripts.join(" + "),
      title: `Written in ${listed} letters${scripts.length > 1 ? ": more than one script" : ""}`,
    };
  }
  if (known.size >= KNOWN_AT_MOST) known.clear();
  known.set(name, description);
  return description;
}

// A small tag naming the scripts of `name`, or null for a name in Latin letters only.
export function scriptTag(name) {
  const description = describe(name);
  if (!description) return null;
  const tag = document.createElement("span");
  tag.className = "script";
  tag.textContent = description.text;
  tag.title = description.title;
  return tag;
}
