"""zoo.weights"""
