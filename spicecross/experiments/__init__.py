"""spicecross.experiments"""
