"""zoo.inference"""
