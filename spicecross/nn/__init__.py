"""spicecross.nn"""
