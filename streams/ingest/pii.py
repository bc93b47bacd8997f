"""Personal data: hashed for matching, masked for display, before leaving raw topics.

The hub needs to recognise the same caller across reports (fusion scores a
repeated caller higher) without keeping the phone number: a keyed
HMAC-SHA256 of the normalised phone (or, without one, the name) does that
and cannot be reversed by enumerating the ~10^9 mobile numbers without the
key.  People read the masked forms (``张*``, ``138****5678``).

Free text (descriptions, titles, addresses) is scanned for mainland mobile
numbers, landlines with an area code, 18-digit resident ID numbers, the
reporter's own name, and names after a label such as ``联系人：``.  Arbitrary
names elsewhere in prose cannot be found reliably by pattern; that gap is
documented in docs/ingest.md.
"""

from __future__ import annotations

import hashlib
import hmac
import re

# GB 11643-1999 resident identity number: 17 digits + check digit (digit or X).
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[\dXx])(?![0-9A-Za-z])")
# Mainland mobile numbers: 11 digits, 1[3-9]x (MIIT numbering plan), optional +86 / 86 prefix,
# optionally written 3-4-4 with spaces or hyphens.
_MOBILE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?(1[3-9]\d)[- ]?(\d{4})[- ]?(\d{4})(?!\d)")
# Landlines: area code 0 + 2-3 digits (Zhejiang's are 057x / 058x), then a 7-8 digit number.
_LANDLINE = re.compile(r"(?<!\d)(0\d{2,3})([- ]?)\d{3,4}(\d{4})(?!\d)")
# A name right after a label that introduces a person.
_LABELLED_NAME = re.compile(r"((?:联系人|姓名|诉求人|来电人|报告人|举报人|反映人|当事人)\s*[:：]?\s*)([\u4e00-\u9fff]{2,4})")
_CJK_NAME = re.compile(r"^[\u4e00-\u9fff·]{2,5}$")


def normalize_phone(phone: str) -> str:
    """Digits only, without a +86 country prefix on mobile numbers, so one phone hashes one way."""
    digits = re.sub(r"\D", "", phone)
    if len(digits) == 13 and digits.startswith("861"):
        digits = digits[2:]
    return digits


def reporter_hash(key: bytes, phone: str | None, name: str | None) -> str | None:
    """Keyed HMAC-SHA256 (hex) of the normalised phone, else of the trimmed name."""
    basis = normalize_phone(phone) if phone and normalize_phone(phone) else (name or "").strip()
    if not basis:
        return None
    return hmac.new(key, basis.encode("utf-8"), hashlib.sha256).hexdigest()


def mask_name(name: str) -> str:
    """``张三`` -> ``张*``, ``欧阳娜娜`` -> ``欧***``: the surname stays, for a polite reply."""
    name = name.strip()
    if not name:
        return name
    return name[0] + "*" * max(1, len(name) - 1)


def mask_phone(phone: str) -> str:
    """``13812345678`` -> ``138****5678``; landlines keep the area code and the last 4 digits."""
    digits = normalize_phone(phone)
    if len(digits) == 11 and digits.startswith("1"):
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits) > 4:
        head = digits[:4] if digits.startswith("0") else ""
        return f"{head}****{digits[-4:]}"
    return "*" * len(digits)


def masked_reporter(name: str | None, phone: str | None) -> str | None:
    parts = [mask_name(name) if name and name.strip() else "", mask_phone(phone) if phone and phone.strip() else ""]
    joined = " ".join(p for p in parts if p)
    return joined or None


def looks_like_person(name: str) -> bool:
    """A 2-5 character all-Chinese string is probably a person (organisations are longer)."""
    return bool(_CJK_NAME.match(name.strip()))


def mask_text(text: str, names: tuple[str, ...] = ()) -> str:
    """Mask ID numbers, phones, labelled names and the given known names inside free text."""
    if not text:
        return text
    text = _ID_CARD.sub(lambda m: f"{m.group(1)}********{m.group(2)}", text)
    text = _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
    text = _LANDLINE.sub(lambda m: f"{m.group(1)}{m.group(2)}****{m.group(3)}", text)
    text = _LABELLED_NAME.sub(lambda m: m.group(1) + mask_name(m.group(2)), text)
    for name in names:
        name = name.strip()
        if len(name) >= 2:  # a one-character "name" would mask ordinary words
            text = text.replace(name, mask_name(name))
    return text
