"""spicecross.devices"""
