"""adbench.plugins"""
