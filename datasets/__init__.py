"""adbench.datasets"""
