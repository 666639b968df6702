import pytest

from yuekang.residents.masking import mask_doc_number, mask_name, mask_phone


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("张小三", "张*三"),
        ("张三", "*三"),
        ("欧阳小明", "欧*明"),
        ("阿卜杜·热合曼", "阿*曼"),
        ("张", "*"),
        ("", ""),
        ("   ", ""),
        (" 张三 ", "*三"),
        ("Chan Tai Man", "C*n"),
        ("  Chan   Tai\tMan ", "C*n"),
        ("Li", "*i"),
        ("A B", "A*B"),
        ("Ng", "*g"),
    ],
)
def test_mask_name(name: str, expected: str) -> None:
    assert mask_name(name) == expected


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("11010519491231002X", "11**************2X"),
        ("A1234563", "A1****63"),
        ("AB9876543", "AB*****43"),
        ("H1234567801", "H1*******01"),
        ("L898902C3", "L8*****C3"),
        ("1234567", "1****67"),
        ("123456", "1***56"),
        ("12345", "1***5"),
        ("1234", "***4"),
        ("123", "**3"),
        ("12", "*2"),
        ("1", "*"),
        ("", ""),
    ],
)
def test_mask_doc_number(number: str, expected: str) -> None:
    assert mask_doc_number(number) == expected


@pytest.mark.parametrize("length", range(19))
def test_mask_doc_number_never_reveals_more_than_half(length: int) -> None:
    number = "".join(chr(ord("A") + i) for i in range(length))
    masked = mask_doc_number(number)
    assert len(masked) == length
    revealed = sum(1 for c in masked if c != "*")
    assert revealed <= length // 2
    assert revealed <= 4


@pytest.mark.parametrize(
    ("phone", "expected"),
    [
        ("+8613800138000", "138****8000"),
        ("+8618612345678", "186****5678"),
        ("+85266123456", "+852 66****56"),
        ("+85366123456", "+853 66****56"),
        ("+886912345678", "+886 91****678"),
        ("+12025550123", "+1 202****123"),
        ("+447911123456", "+44 791****456"),
        ("+8529123", "+852 ****"),
    ],
)
def test_mask_phone(phone: str, expected: str) -> None:
    assert mask_phone(phone) == expected


@pytest.mark.parametrize(
    "phone",
    ["8613800138000", "+86 138 0013 8000", "+0861380013800", "+86", "+1", "", "+8613800138000123"],
)
def test_mask_phone_rejects_non_e164(phone: str) -> None:
    with pytest.raises(ValueError, match=r"E\.164|national") as exc:
        mask_phone(phone)
    # The message must not echo any digit of the number it was meant to hide.
    assert not any(ch.isdigit() for ch in str(exc.value).replace("E.164", ""))
