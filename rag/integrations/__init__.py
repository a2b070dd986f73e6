"""Adapters between `rag` and other frameworks, each behind its own optional extra.

    rag.integrations.langchain   LangChain (langchain-core): pip install 'rag[langchain]'

Nothing here is imported by `import rag`; importing an integration without its extra raises
`MissingDependencyError` naming the extra to install.
"""
