"""The CPU a benchmark figure came from is named so that CPU classes differ even where the VM hides the model name."""

from __future__ import annotations

from ccstereo.testing.bench import cpu_name

ZEN4_VM = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx2 fma avx512f avx512bw avx512_bf16 avx512_vnni

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 99
model\t\t: 1
model name\t: another line that must not be read
"""

SAPPHIRE_RAPIDS = """processor\t: 0
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: avx2 avx512f avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8
"""

ZEN3 = """processor\t: 0
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: sse2 avx avx2 fma
"""

ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd
"""


def test_each_cpu_class_is_told_apart_by_family_model_and_units():
    assert cpu_name(ZEN4_VM) == "AMD EPYC (family 25 model 17; AVX2 AVX-512 BF16 VNNI)"
    assert cpu_name(SAPPHIRE_RAPIDS) == (
        "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz (family 6 model 143; AVX2 AVX-512 BF16 VNNI AMX)"
    )
    assert cpu_name(ZEN3) == "AMD EPYC 7B13 (family 25 model 1; AVX2)"
    assert "family" not in cpu_name(ARM) and cpu_name(ARM)  # no x86 fields: the name alone, never empty
