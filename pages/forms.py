from django import forms

# Pubkeys, identities and auth keys are far shorter; anything longer is a paste gone wrong.
MAX_IDENTIFIER_LENGTH = 500


class OwnerForm(forms.Form):
    identifier = forms.CharField(
        max_length=MAX_IDENTIFIER_LENGTH,
        strip=True,
        label="Your worker's auth key, public key or user id",
        widget=forms.PasswordInput(attrs={"autocomplete": "off", "autocapitalize": "off", "spellcheck": "false"}),
    )

    def clean_identifier(self) -> str:
        value = self.cleaned_data["identifier"]
        if value == "user":
            # /worker/detail's `query=user` means "the caller's API key"; here, paste the key itself.
            raise forms.ValidationError("Paste the API key your workers connect with, not the word 'user'.")
        return value
