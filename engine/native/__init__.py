"""engine.native"""
