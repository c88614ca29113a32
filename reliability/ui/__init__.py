"""The app's user interface: Gradio handlers, tab builders and what the tabs render; nothing here touches SQL."""
