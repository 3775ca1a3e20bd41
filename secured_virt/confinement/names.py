"""Which names a VM may be given.

Why: a VM's name is what people read in ``list``, in denials and in the audit log, and what
RBAC grants and the sHype/ACM bookkeeping are keyed on.  Two kinds of name defeat that:

* the host object's name (``Domain-0``, config key ``host_object``): a VM called that is shown
  with dom0's label and skipped by the ACM sync, so it would run unmediated beside anything;
* names that do not show what they are: bidi controls and right-to-left letters that reorder
  the text around them, invisible and format characters (zero-width spaces, joiners, word
  joiners, variation selectors, fillers), control characters and line separators, other
  blanks than the plain space, compatibility forms (fullwidth letters), and letters of two
  scripts in one name (a Cyrillic ``\\u0430`` inside ``alice-web``).

The UA/PA schemas keep the same classes out of user and role names (``rbac/schemas/*.xsd``:
``[^\\s\\p{Z}\\p{C}]+``); VM names may in addition hold plain spaces inside, as libvirt allows.
What is not caught: a name written entirely in another script that happens to look like a
Latin one (``\\u0430\\u0441\\u0435`` in Cyrillic); ``list`` shows it as given.

The ``<name>`` element is also read the way libvirt reads it (XPath ``string(./name[1])``:
all its text, children included, nothing stripped), so what is checked is what libvirt uses.
"""

from __future__ import annotations

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
