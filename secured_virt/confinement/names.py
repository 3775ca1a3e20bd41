"""Which names a VM may be given.

Why: a VM's name is what people read in ``list``, in denials and in the audit log, and what
RBAC grants and the sHype/ACM bookkeeping are keyed on.  Three kinds of name defeat that:

* the host object's name (``Domain-0``, config key ``host_object``): a VM called that is shown
  with dom0's label and skipped by the ACM sync, so it would run unmediated beside anything;
* names that do not show what they are: bidi controls and right-to-left letters that reorder
  the text around them, invisible and format characters (zero-width spaces, joiners, word
  joiners, variation selectors, fillers), control characters and line separators, other
  blanks than the plain space, compatibility forms (fullwidth letters), and letters of two
  scripts in one name (a Cyrillic ``\\u0430`` inside ``alice-web``);
* a name written wholly in letters of another script that all look like Latin letters or
  digits (Cyrillic ``\\u0441\\u043e\\u0441\\u043e`` reads "coco"): it passes for a Latin name
  beside the real one.  Which letters look so is Unicode's (UTS #39, confusables.txt): the
  letters outside Latin that it maps to one ASCII letter or digit (``_LOOKALIKES``, 295 of
  them in Cyrillic, Greek, Armenian, Cherokee, Coptic, Lisu and others).  A name of such a
  script with one letter that shows its script stays allowed (Russian
  ``\\u0441\\u0435\\u0440\\u0432\\u0435\\u0440``, "server": its ``\\u0432`` looks like no Latin
  letter).

The UA/PA schemas keep the same classes out of user and role names (``rbac/schemas/*.xsd``:
``[^\\s\\p{Z}\\p{C}]+``); VM names may in addition hold plain spaces inside, as libvirt allows.

The ``<name>`` element is also read the way libvirt reads it (XPath ``string(./name[1])``:
all its text, children included, nothing stripped), so what is checked is what libvirt uses.
"""

from __future__ import annotations

import functools
import unicodedata

#: always reserved, whatever host_object says: Xen's name for dom0
RESERVED = ("Domain-0",)
MAX_LENGTH = 1024  # the PA schema's limit for VM names (ObjectName)

#: categories never allowed: controls, format (bidi controls, zero-width characters),
#: surrogates, private use, unassigned, line/paragraph separators, enclosing marks
_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Me"}
#: bidi classes of right-to-left text, which reorders what is displayed around it
_RTL_BIDI = {"R", "AL", "AN", "RLE", "RLO", "RLI", "LRE", "LRO", "LRI", "FSI", "PDF", "PDI"}
#: default-ignorable code points that are not in a category above (Unicode
#: DerivedCoreProperties: Default_Ignorable_Code_Point): they render as nothing
_IGNORABLE = (
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x115F, 0x1160),  # Hangul fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian variation selectors
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xE0100, 0xE01EF),  # variation selectors supplement
)
#: scripts that are written together in one language (Japanese, Korean)
_MIXABLE = ({"CJK", "HIRAGANA", "KATAKANA"}, {"CJK", "HANGUL"})
#: pairs (letter of a script other than Latin, the ASCII letter or digit it looks like):
#: every single-letter prototype of Unicode's confusables.txt (UTS #39) whose source is such a
#: letter, compatibility forms left out (they are refused above anyway)
_LOOKALIKES = (
    "\u037fJ\u0391A\u0392B\u0395E\u0396Z\u0397H\u0399l\u039aK\u039cM\u039dN\u039fO\u03a1P"
    "\u03a4T\u03a5Y\u03a7X\u03b1a\u03b3y\u03b9i\u03bdv\u03bfo\u03c1p\u03c3o\u03c5u\u03dcF"
    "\u03e82\u03f3j\u03faM\u0405S\u0406l\u0408J\u0410A\u0412B\u0415E\u04173\u041aK\u041cM"
    "\u041dH\u041eO\u0420P\u0421C\u0422T\u0423Y\u0425X\u042cb\u0430a\u04316\u0433r\u0435e"
    "\u043eo\u0440p\u0441c\u0443y\u0445x\u0455s\u0456i\u0458j\u0461w\u0474V\u0475v\u04aeY"
    "\u04afy\u04bbh\u04bde\u04c0l\u04cfi\u04e03\u0501d\u050cG\u051bq\u051cW\u051dw\u054dU"
    "\u054fS\u0555O\u0561w\u0563q\u0566q\u0570h\u0578n\u057cn\u057du\u0581g\u0584f\u0585o"
    "\u0b20O\u0d20o\u101do\u10e7y\u10ffo\u1200U\u12d0O\u13a0D\u13a1R\u13a2T\u13a5i\u13a9Y"
    "\u13aaA\u13abJ\u13acE\u13b3W\u13b7M\u13bbH\u13bdY\u13c0G\u13c2h\u13c3Z\u13ce4\u13cfb"
    "\u13d2R\u13d4W\u13d5S\u13d9V\u13daS\u13deL\u13dfC\u13e2P\u13e6K\u13e7d\u13ee6\u13f3G"
    "\u13f4B\u142fV\u144cU\u146dP\u146fd\u1472b\u148dJ\u14aaL\u14bf2\u1541x\u157cH\u157dx"
    "\u1587R\u15afb\u15b4F\u15c5A\u15deD\u15eaD\u15f0M\u15f7B\u16b7X\u16c1l\u16d5K\u16d6M"
    "\u1d26r\u2c85r\u2c8eH\u2c92l\u2c94K\u2c98M\u2c9aN\u2c9eO\u2c9fo\u2ca2P\u2ca3p\u2ca4C"
    "\u2ca5c\u2ca6T\u2ca8Y\u2cacX\u2cca9\u2ccc3\u2cd0L\u2cd26\u2d38V\u2d39E\u2d4fl\u2d54O"
    "\u2d55Q\u2d5dX\ua4d0B\ua4d1P\ua4d2d\ua4d3D\ua4d4T\ua4d6G\ua4d7K\ua4d9J\ua4daC\ua4dcZ"
    "\ua4ddF\ua4dfM\ua4e0N\ua4e1L\ua4e2S\ua4e3R\ua4e6V\ua4e7H\ua4eaW\ua4ebX\ua4ecY\ua4eeA"
    "\ua4f0E\ua4f2l\ua4f3O\ua4f4U\ua6442\ua647i\ua6dfV\uab75i\uab81r\uab83w\uab93z\uaba9v"
    "\uabaas\uabafc\U00010282B\U00010286E\U00010287F\U0001028al\U00010290X\U00010292O"
    "\U00010295P\U00010296S\U00010297T\U000102a0A\U000102a1B\U000102a2C\U000102a5F"
    "\U000102abO\U000102b0M\U000102b1T\U000102b2Y\U000102b4X\U000102cfH\U00010301B"
    "\U00010302C\U00010309l\U00010311M\U00010315T\U00010317X\U0001031a8\U00010404O"
    "\U00010415C\U0001041bL\U00010420S\U0001042co\U0001043dc\U00010448s\U000104b4R"
    "\U000104c2O\U000104ceU\U000104d27\U000104eao\U000104f6u\U00010513N\U00010516O"
    "\U00010518K\U0001051cC\U0001051dV\U00010525F\U00010526L\U00010527X\U00011706v"
    "\U0001170aw\U0001170ew\U0001170fw\U000118a0V\U000118a2F\U000118a3L\U000118a4Y"
    "\U000118a6E\U000118a9Z\U000118ac9\U000118aeE\U000118af4\U000118b2L\U000118b5O"
    "\U000118b8U\U000118bb5\U000118bcT\U000118c0v\U000118c1s\U000118c2F\U000118c3i"
    "\U000118c4z\U000118c67\U000118c8o\U000118ca3\U000118cc9\U000118d56\U000118d69"
    "\U000118d7o\U000118d8u\U000118dcy\U00016f08V\U00016f0aT\U00016f16L\U00016f28l"
    "\U00016f35R\U00016f3aS\U00016f3b3\U00016f40A\U00016f42U\U00016f43Y"
)


@functools.cache
def _looks_latin() -> dict[str, str]:
    return dict(zip(_LOOKALIKES[::2], _LOOKALIKES[1::2], strict=True))


class VmNameError(ValueError):
    """A name a VM may not have; the message says why and what to use."""


def check_vm_name(name: str, reserved=()) -> str:
    """Return ``name`` if a VM may have it; raise VmNameError otherwise.

    ``reserved`` adds names (the configured ``host_object``) to ``RESERVED``; reserved names
    are compared after compatibility normalisation and case folding, so ``DOMAIN-0`` and a
    fullwidth ``\\uff24omain-0`` are reserved too."""
    if not isinstance(name, str) or not name:
        raise VmNameError("a VM name must not be empty")
    if len(name) > MAX_LENGTH:
        raise VmNameError(f"a VM name has at most {MAX_LENGTH} characters ({len(name)} given)")
    if name != name.strip(" "):
        raise VmNameError(f"VM name {name!r} starts or ends with a space")
    for ch in name:
        why = _char_problem(ch)
        if why:
            raise VmNameError(
                f"VM name {name!a} contains U+{ord(ch):04X} ({why}), which would make "
                "the name show as something it is not; use letters, digits, '-', '_', '.'"
            )
    folded = unicodedata.normalize("NFKC", name).casefold()
    for r in (*RESERVED, *reserved):
        if r and folded == unicodedata.normalize("NFKC", r).casefold():
            raise VmNameError(
                f"'{name}' is the name of the host object (host_object); a VM may not use it"
            )
    if unicodedata.normalize("NFKC", name) != name:
        raise VmNameError(
            f"VM name {name!a} uses compatibility or decomposed characters; write it as "
            f"{unicodedata.normalize('NFKC', name)!a}"
        )
    scripts = {_script(ch) for ch in name if ch.isalpha()} - {None}
    if len(scripts) > 1 and not any(scripts <= ok for ok in _MIXABLE):
        raise VmNameError(
            f"VM name {name!a} mixes letters of {', '.join(sorted(scripts))} scripts, "
            "which lets one name pass for another; use one script"
        )
    if scripts and scripts != {"LATIN"}:
        seen = _looks_latin()
        letters = [ch for ch in name if ch.isalpha()]
        if all(ch in seen for ch in letters):
            reads = "".join(seen.get(ch, ch) for ch in name)
            raise VmNameError(
                f"VM name {name!a} is written in {', '.join(sorted(scripts))} letters that "
                f"all look like Latin ones: it reads as '{reads}' and would pass for that "
                "name; use Latin letters, or a letter of its script that shows it"
            )
    return name


def name_of(root, reserved=()) -> str:
    """The name libvirt will give domain XML ``root`` (its first ``<name>``), checked.

    A ``<name>`` with child elements, comments or processing instructions is refused: libvirt
    reads all the text inside it, a naive reader only the part before the first child."""
    el = root.find("name")
    if el is None:
        raise VmNameError("domain XML has no <name>")
    if len(el):
        raise VmNameError(f"line {el.sourceline}: <name> must hold plain text only")
    return check_vm_name(el.text or "", reserved)


def _char_problem(ch: str) -> str | None:
    cat = unicodedata.category(ch)
    if cat in _BAD_CATEGORIES:
        return f"an invisible, control or format character, category {cat}"
    if cat.startswith("Z") and ch != " ":
        return "a blank other than the plain space"
    if unicodedata.bidirectional(ch) in _RTL_BIDI:
        return "right-to-left text, which reorders what is shown around it"
    code = ord(ch)
    if any(lo <= code <= hi for lo, hi in _IGNORABLE):
        return "a character that is displayed as nothing"
    return None


def _script(ch: str) -> str | None:
    """The script of a letter, from its Unicode name ("LATIN SMALL LETTER A" -> LATIN)."""
    try:
        first = unicodedata.name(ch).split(" ", 1)[0]
    except ValueError:
        return None
    return None if first == "KATAKANA-HIRAGANA" else first  # the prolonged sound mark: both
