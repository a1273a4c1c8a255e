"""adbench.reports"""
