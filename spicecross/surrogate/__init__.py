"""spicecross.surrogate"""
