"""python -m converter.zoo int8 NAME WEIGHTS REP OUT: the isolated int8 conversion (convert.to_int8_isolated)."""

import sys

from .convert import _int8_child

if len(sys.argv) == 6 and sys.argv[1] == "int8":
    _int8_child(*sys.argv[2:])
