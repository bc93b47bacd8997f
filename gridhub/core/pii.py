"""Personal data: hashed for matching, masked for display, before leaving raw topics.

Used by ingest (streams/ingest/normalize.py, the offline device events) and by the ClickHouse sink (dead letters).

The hub needs to recognise the same caller across reports (fusion scores a
repeated caller higher) without keeping the phone number: a keyed
HMAC-SHA256 of the normalised phone (or, without one, the name) does that
and cannot be reversed by enumerating the ~10^9 mobile numbers without the
key.  People read the masked forms (``张*``, ``138****5678``).

Free text is scanned for personal data written the way people write it:

* the text is NFKC-normalised first (full-width ``１３８`` is ``138``), but only
  for *finding*: every character outside a match is kept exactly as written,
  so places, amounts and punctuation survive byte for byte;
* phone numbers are found by Google's libphonenumber (``phonenumbers``'s
  ``PhoneNumberMatcher`` with the CN metadata): mobiles, landlines with the
  area code in brackets or spaces, ``+86`` / ``0086`` prefixes, 400/800
  hotlines, separated by hyphens, dots or runs of spaces.  A maintained
  numbering plan beats a hand-written regex that needs an edit per format; a
  small safety net still catches an 11-digit ``1[3-9]`` mobile the library
  would not call valid;
* resident ID numbers (GB 11643-1999: 18 digits with check character, or the
  old 15-digit form), with or without spaces, when the birth date is a date;
* names right after a label that introduces a person (``联系人``, ``业主``,
  ``老板``, ``户主``, ``来电人`` ...), when what follows *is* a name: a known
  surname, then one or two given-name characters that are not function
  words.  ``来电人说他在许村上班`` stays intact (``说`` is no surname);
* the names the document itself names (reporter, caller, device owner),
  wherever they occur.

Arbitrary names elsewhere in prose cannot be found reliably by pattern; that
gap is documented in docs/security.md.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from datetime import date
from typing import Any, Iterable

import phonenumbers
from phonenumbers import Leniency, PhoneNumberMatcher

#: Where a number without a country prefix is dialled from: mainland China.
REGION = "CN"

# GB 11643-1999 resident identity number: 6-digit area + YYYYMMDD + 3 digits + check (digit or X);
# the pre-1999 form has 15 digits (6 + YYMMDD + 3).  People group it with single spaces or hyphens.
_ID_RUN = re.compile(r"(?<![0-9A-Za-z])\d(?:[ \-]?\d){13,16}[ \-]?[\dXx](?![0-9A-Za-z])")
# Safety net for mainland mobiles (MIIT plan: 1[3-9] + 9 digits) the phone library does not call
# valid (e.g. a prefix not yet in its metadata), separated by single spaces, hyphens or dots.
_MOBILE_RUN = re.compile(r"(?<![0-9A-Za-z])(?:\+?86[ \-]?|0086[ \-]?)?1[3-9]\d(?:[ .\-]*\d){8}(?![0-9A-Za-z])")
# Quick pre-check: the phone library is only worth calling where 7+ digits occur together
# (the shortest CN subscriber number, 7 digits, e.g. Huzhou's 0572 numbers).
#: Words that announce a phone number in Chinese prose (a bare local number needs one just before it).
_PHONE_WORD = re.compile(r"电话|手机|座机|热线|联系|号码|拨打|致电|来电|tel|Tel|TEL|phone|Phone")
_LOCAL_AFTER_WORD = re.compile(r"(?:电话|手机|座机|热线|联系|号码|拨打|致电|来电|tel|Tel|TEL|phone|Phone)"
                               r"[^0-9]{0,4}?(?<![0-9])([2-9]\d{2,3}[ \-]?\d{4})(?![0-9])")
_SEVEN_DIGITS = re.compile(r"\d(?:[ .\-()]*\d){6,}")

#: Labels that introduce a person in Chinese complaint / work-order prose.
LABELS = ("联系人", "姓名", "诉求人", "来电人", "报告人", "举报人", "反映人", "当事人", "投诉人", "求助人",
          "报警人", "申请人", "业主", "老板娘", "老板", "户主", "房东", "房主", "租户", "租客", "车主",
          "店主", "负责人", "法定代表人", "法人", "经营者", "监护人", "家属")
# Single-character surnames of the Hundred Family Surnames that are common in Zhejiang, *without*
# those that are everyday words (于 向 和 从 在 上 东 应 安 常 万 任 管 ...): a label followed
# by such a word is prose, and a person so named is rare enough to lose to precision.
_SURNAMES_1 = set(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余杜叶程魏苏吕丁"
    "任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方邹熊孟秦邱侯江尹薛闫段雷龙黎史陶贺毛郝顾龚邵万钱严"
    "洪武戴莫孔汤温施牛樊葛邢庞颜倪祝鲁俞翁柳甘章褚戚屠童瞿楼傅岑舒茅濮裘卓虞凌费"
    "诸蒲鲍柴晏宣阮盛殷郁闵滕卜骆芦焦祁缪邬竺忻娄胥尤冉饶蓝麻揭桂乔季")
_SURNAMES_2 = ("欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐", "夏侯",
               "长孙", "宇文", "司徒", "端木", "闻人", "南宫", "西门")
# Characters that end a name rather than continue it: verbs of speech, pronouns, particles,
# prepositions, honorifics (王先生 / 李女士 name nobody), time and place words.
_NOT_GIVEN = set(
    "说称讲表示要求反映认为觉得想看听问答告诉述讲叫是为系在于到向从对把被给让跟和与及同等也都就还又再"
    "才先已曾正刚将会能可不没无有很太最更他她它您你我咱们自己家里外上下前后左右内今昨早"
    "晚午夜年月日号时点分这那哪其某个位名姓先生女士师傅老板总经理主任书记阿姨叔伯爷奶婆公的地得着"
    "了过吗呢吧啊啦哦呀嘛电话手机号码住户房店厂村镇路街区县市楼幢栋单元室门口多少几两"
    "百千万元块钱一二")
# A name is at most 2 given characters after the surname (3-4 characters in all).
_LABELLED = re.compile("(?:" + "|".join(sorted(LABELS, key=len, reverse=True)) + r")[ \t]*[:：]?[ \t]*"
                       r"(?:(?:名叫|叫做|叫|是|为|系)[ \t]*)?")
_CJK = re.compile(r"[\u4e00-\u9fff]")
# Fast path of mask_text: any digit (ASCII, full-width or other Unicode decimal), or any label.
_ANY_DIGIT = re.compile(r"\d")
_ANY_LABEL = re.compile("|".join(LABELS))
_CJK_NAME = re.compile(r"^[\u4e00-\u9fff·]{2,5}$")


def nfkc(text: str) -> str:
    """Full-width digits, letters and punctuation to their ASCII forms (``１３８（0572）`` -> ``138(0572)``)."""
    return unicodedata.normalize("NFKC", text)


def normalize_phone(phone: str) -> str:
    """Digits only, NFKC first, without a +86 / 0086 prefix on mobiles, so one phone hashes one way."""
    digits = re.sub(r"[^0-9]", "", nfkc(phone))
    if len(digits) == 13 and digits.startswith("861"):
        digits = digits[2:]
    elif len(digits) == 15 and digits.startswith("00861"):
        digits = digits[4:]
    return digits


def reporter_hash(key: bytes, phone: str | None, name: str | None) -> str | None:
    """Keyed HMAC-SHA256 (hex) of the normalised phone, else of the trimmed name."""
    basis = normalize_phone(phone) if phone and normalize_phone(phone) else nfkc(name or "").strip()
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


# --------------------------------------------------------------------------- finding spans


def _id_span_ok(digits: str) -> bool:
    """An ID number's shape: a plausible area code and a real birth date (so order numbers survive)."""
    if len(digits) == 18:
        year, month, day = int(digits[6:10]), int(digits[10:12]), int(digits[12:14])
        if not 1900 <= year <= 2100:
            return False
    elif len(digits) == 15:
        year, month, day = 1900 + int(digits[6:8]), int(digits[8:10]), int(digits[10:12])
    else:
        return False
    if digits[0] not in "12345678":  # GB/T 2260 area codes start 1-8 (11 Beijing ... 82 Macau)
        return False
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _id_spans(text: str) -> list[tuple[int, int, str]]:
    out = []
    for m in _ID_RUN.finditer(text):
        compact = re.sub(r"[ \-]", "", m.group())
        if _id_span_ok(compact.upper()):
            out.append((m.start(), m.end(), f"{compact[:6]}{'*' * (len(compact) - 10)}{compact[-4:]}"))
    return out


_PLAIN_MOBILE = re.compile(r"1[3-9]\d{9}")


def _library_matches(text: str) -> Iterable[tuple[int, int, str, str, int]]:
    """``(start, end, raw, number)`` of the phone library's matches, run only on the digit runs.

    The matcher scans its whole input with a large pattern; on a 200-character description most
    of that is Chinese text without a digit.  Each run of 7+ digits (with the separators people
    use, and a leading ``+`` or bracket) is handed to it alone, so the cost follows the digits.
    """
    for run in _SEVEN_DIGITS.finditer(text):
        start = run.start()
        if _PLAIN_MOBILE.fullmatch(run.group()) and (start == 0 or text[start - 1] not in "+("):
            # The most common case, 11 plain digits of a mobile: the safety net below masks these
            # anyway, so the library (~0.2 ms a number) is spared.
            yield run.start(), run.end(), run.group(), run.group(), 86
            continue
        while start > 0 and text[start - 1] in "+(":
            start -= 1
        end = run.end() + (1 if run.end() < len(text) and text[run.end()] == ")" else 0)
        for match in PhoneNumberMatcher(text[start:end], REGION, leniency=Leniency.VALID):
            yield (start + match.start, start + match.end, match.raw_string,
                   str(match.number.national_number), int(match.number.country_code or 0))


def _phone_spans(text: str) -> list[tuple[int, int, str]]:
    if not _SEVEN_DIGITS.search(text):
        return []
    out = []
    for m_start, m_end, raw, national, country in _library_matches(text):
        if country == 86 and national.startswith("1") and len(national) == 11:
            masked = f"{national[:3]}****{national[-4:]}"
        else:
            area = re.match(r"\(?\+?(?:0086|86)?[ \-]?\(?(0\d{2,3})\)?", raw)
            hotline = national[:3] in ("400", "800")
            if not area and not hotline and not raw.startswith(("+", "00")) \
                    and not _PHONE_WORD.search(text, max(0, m_start - 8), m_start):
                # A bare 7-8 digit number is a phone only when the text says so (电话 2123456):
                # otherwise it is a category code, an amount or a count, and must survive.
                continue
            head = area.group(1) if area else (national[:3] if hotline else "")
            masked = f"{head}****{national[-4:]}"
        out.append((m_start, m_end, masked))
    for m in _LOCAL_AFTER_WORD.finditer(text):  # 电话 2123456: valid only with an area code, still a phone
        out.append((m.start(1), m.end(1), f"****{m.group(1)[-4:]}"))
    for m in _MOBILE_RUN.finditer(text):
        digits = re.sub(r"\D", "", m.group())[-11:]
        out.append((m.start(), m.end(), f"{digits[:3]}****{digits[-4:]}"))
    return out


def _surname_at(text: str, i: int) -> int:
    """Length of the surname starting at ``i`` (2 for 欧阳, 1 for 王), 0 if none."""
    if text[i:i + 2] in _SURNAMES_2:
        return 2
    return 1 if i < len(text) and text[i] in _SURNAMES_1 else 0


def _labelled_name_spans(text: str) -> list[tuple[int, int, str]]:
    out = []
    for m in _LABELLED.finditer(text):
        start = m.end()
        surname = _surname_at(text, start)
        if not surname:
            continue
        end = start + surname
        while end < len(text) and end - start - surname < 2 and _CJK.match(text[end]) and text[end] not in _NOT_GIVEN:
            end += 1
        if end - start - surname < 1:
            continue  # a bare surname (负责人姓周, 联系人王先生) names nobody
        name = text[start:end]
        out.append((start, end, mask_name(name)))
    return out


def _known_name_spans(text: str, names: Iterable[str]) -> list[tuple[int, int, str]]:
    out = []
    for name in names:
        name = nfkc(name).strip()
        # A one-character "name" would mask ordinary words, and a caller field holding 匿名 / 网友 /
        # 锦华苑业主 names nobody: only what starts with a surname is searched for in the text.
        if len(name) < 2 or not _surname_at(name, 0):
            continue
        at = text.find(name)
        while at >= 0:  # str.find, not a regex per name: thousands of names would thrash re's cache
            out.append((at, at + len(name), mask_name(name)))
            at = text.find(name, at + len(name))
    return out


def find_pii(text: str, names: Iterable[str] = ()) -> list[tuple[int, int, str]]:
    """Non-overlapping ``(start, end, replacement)`` spans of personal data in NFKC ``text``.

    IDs are found first (an ID's digits would otherwise also look like a phone), then phones,
    then names; an overlapping later span is dropped.
    """
    spans: list[tuple[int, int, str]] = []
    for found in (_id_spans(text), _phone_spans(text), _known_name_spans(text, names), _labelled_name_spans(text)):
        for s in sorted(found):
            if all(s[1] <= a or s[0] >= b for a, b, _ in spans):
                spans.append(s)
    return sorted(spans)


def mask_text(text: str, names: tuple[str, ...] = ()) -> str:
    """Mask ID numbers, phones, labelled names and the given known names inside free text.

    Matching runs on the NFKC form; replacements are mapped back to the original characters,
    so everything outside personal data stays as written (full-width punctuation included).
    """
    if not text:
        return text
    if not _ANY_DIGIT.search(text) and not _ANY_LABEL.search(text) and not any(n and n in text for n in names):
        return text  # the common case of a short field: nothing that could be personal data
    if unicodedata.is_normalized("NFKC", text):
        normal, origin = text, list(range(len(text)))
    else:
        # NFKC per character, remembering which original character each normalised one came from.
        pieces = [unicodedata.normalize("NFKC", ch) for ch in text]
        origin = [i for i, piece in enumerate(pieces) for _ in piece]
        normal = "".join(pieces)
    spans = find_pii(normal, names)
    if not spans:
        return text
    out, last = [], 0
    for start, end, replacement in spans:
        o_start, o_end = origin[start], origin[end - 1] + 1
        if o_start < last:
            continue
        out.append(text[last:o_start])
        out.append(replacement)
        last = o_end
    out.append(text[last:])
    return "".join(out)


#: Report / DeviceEvent fields that are identifiers, codes or values the hub computed, never text a
#: person wrote: left alone by :func:`mask_fields` (every other string field is masked).
STRUCTURAL_FIELDS = frozenset({
    "report_id", "source", "source_ref", "kind", "county_code", "street_code", "village_code", "category",
    "source_category_code", "reporter_hash", "reporter_masked", "platform", "device_id", "device_type",
    "case_id", "event_id", "event_type", "dispatchable",
})


def mask_fields(record: dict[str, Any], names: tuple[str, ...] = ()) -> dict[str, Any]:
    """Mask every free-text field of a Report / DeviceEvent dict in place (strings and string lists).

    Applied to the whole record, not to a list of fields someone remembered: a source that starts
    writing a phone into ``status`` or ``unit`` is covered without a change here.
    """
    for key, value in record.items():
        if key in STRUCTURAL_FIELDS:
            continue
        if isinstance(value, str):
            record[key] = mask_text(value, names)
        elif isinstance(value, list):
            record[key] = [mask_text(v, names) if isinstance(v, str) else v for v in value]
    return record


def phone_region_ok() -> bool:
    """The phone library has CN metadata (a broken install would silently mask nothing)."""
    return phonenumbers.is_valid_number(phonenumbers.parse("13812345678", REGION))


def names_in(doc: Any, registry: Any = None) -> tuple[str, ...]:
    """The personal names a raw document carries: 12345 ``caller``, the platform ``reporter.name``,
    and the registry ``owner`` of a sensor's device when that owner looks like a person."""
    names: list[str] = []
    if isinstance(doc, dict):
        reporter = doc.get("reporter")
        for value in (doc.get("caller"), reporter.get("name") if isinstance(reporter, dict) else None):
            if isinstance(value, str) and value.strip():
                names.append(value.strip())
        device = doc.get("deviceId")
        entry = registry.get(device) if registry is not None and isinstance(device, str) else None
        owner = entry.get("owner") if isinstance(entry, dict) else None
        if isinstance(owner, str) and looks_like_person(owner):
            names.append(owner.strip())
    return tuple(names)
